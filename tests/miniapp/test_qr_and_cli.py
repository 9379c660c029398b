"""`meterpay qr room ROOM` writes a PNG and an SVG whose link carries the room's binding token."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

from click.testing import CliRunner

from meterpay.cli import cli


def test_qr_room_writes_png_and_svg_carrying_a_binding_token(factory, tmp_path):
    from miniapp_api.qr import room_from_token
    site = factory.site("QR Plaza")
    room = factory.room(site, number="301")
    factory.session.commit()
    result = CliRunner().invoke(cli, ["qr", "room", "301", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert (tmp_path / "room-301.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "room-301.svg").read_bytes()
    token = parse_qs(urlparse(out["url"]).query)["token"][0]
    assert room_from_token(token) == room.id and out["site"] == "QR Plaza"


def test_qr_for_an_unknown_or_ambiguous_room_is_a_one_line_error(factory, tmp_path):
    factory.room(factory.site("East"), number="12")
    factory.room(factory.site("West"), number="12")
    factory.session.commit()
    runner = CliRunner()
    result = runner.invoke(cli, ["qr", "room", "999", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "no room 999" in result.output
    result = runner.invoke(cli, ["qr", "room", "12", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--site" in result.output
    result = runner.invoke(cli, ["qr", "room", "12", "--site", "West", "--out", str(tmp_path)])
    assert result.exit_code == 0 and list(tmp_path.iterdir())


def test_pay_refund_cli_refuses_a_bad_amount_without_a_traceback(factory):
    for amount in ("1.234", "1e400", "abc"):
        result = CliRunner().invoke(cli, ["pay", "refund", "MPNOPE", amount])
        assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["pay", "refund", "MPNOPE", "5"])
    assert result.exit_code == 2 and "no order MPNOPE" in result.output


def test_pay_orders_lists_flagged_orders_for_a_manager(factory):
    from core.db import session_scope
    from core.payments import orders as payments
    account = factory.account()
    with session_scope() as s:
        order = payments.create_order(s, account.id, 5000, "wechat")
        payments.flag(s, order, "amount 0.01 does not match order amount 50.00")
    result = CliRunner().invoke(cli, ["pay", "orders"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["amount"], r["state"]) for r in rows] == [("50.00", "flagged")]
    assert "does not match" in rows[0]["flag_reason"]
