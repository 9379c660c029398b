"""``meterpay qr room ROOM``: a room's binding QR code as PNG and SVG, for managers to print."""
from __future__ import annotations

from pathlib import Path

import click

from meterpay.cli.base import cli, friendly_errors, print_json


@cli.group()
def qr() -> None:
    """QR codes tenants scan in the mini-program."""


@qr.command("room")
@click.argument("room")
@click.option("--site", "site_name", default=None, help="site name, when several sites have this room number")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="folder to write room-<ROOM>.png and room-<ROOM>.svg into")
@friendly_errors
def room(room: str, site_name: str | None, out_dir: str) -> None:
    """Write ROOM's binding QR code (PNG and SVG); prints the files and the link as JSON."""
    from core.db import new_session
    from core.sites.room_lookup import find_room_by_number
    from miniapp_api import qr as codes
    with new_session() as session:
        found, site = find_room_by_number(session, room, site_name)
        room_id, number = found.id, found.number
    url = codes.binding_url(room_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "room-" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in number)
    png, svg = out / f"{stem}.png", out / f"{stem}.svg"
    png.write_bytes(codes.png(url))
    svg.write_bytes(codes.svg(url))
    print_json({"room": number, "site": site, "png": str(png), "svg": str(svg), "url": url})
