"""Bulk onboarding from a spreadsheet (CSV or .xlsx).

Columns: building,floor,room,area_m2,tenant,phone,meter_serial,meter_kind,profile,gateway,
address,tariff,billing_mode,opening_balance (opening_balance in yuan).

The whole file is read and every row checked before anything is written: a file that cannot be
read (missing, not UTF-8, a text file named ``.xlsx``, a wrong header) raises ``ValidationError``
and leaves nothing behind, not even the site. A row is refused with ``line N: reason`` for an
empty required cell, a bad number or amount, a phone that is not a mainland mobile number, a
gateway URL without host or port, a profile the caller does not know (``profiles``: name -> meter
kind, passed in by the fronts because core does not import hardware) or a meter kind that does not
fit its profile.

One row is one meter. Rows of the same room (and tenant) make one account with several meters;
they name the same tenant, phone and billing mode. ``tariff`` is the plan of the row's meter kind
(utility): the rows of a room's electricity meters name one plan, its water meters' rows another
(a blank cell takes the other rows'), and a plan whose unit does not fit the meter kind (a kWh plan
on a water row) is refused. A plan name is the site's plan, or a template the site copies. On a row
without a tenant, ``tariff`` sets the meter's own plan (a common area's master meter).
Each room is imported in its own savepoint: a bad row is reported with its line number and the
reason, and nothing of that room is left behind; the other rooms still go in. Re-importing the
same file changes nothing (rooms, tenants, meters are looked up by their natural keys and the
opening balance is posted once per account under the key ``opening:<account id>``).
"""
from __future__ import annotations

import csv
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import billing
from core.db import get_existing
from core.errors import MeterpayError, ValidationError
from core.ledger.money import format_fen, parse_yuan
from core.models import Account, Building, Floor, Meter, Room, Site, Tenant
from core.models.meter import METER_KINDS
from core.models.site import find_site, site_named
from core.models.tenant import BILLING_MODES
from core.sites.accounts import MeterSpec, OpenAccountRequest, attach_meter, change_tariff, open_account
from core.tariffs.store import plan_for

COLUMNS = ("building", "floor", "room", "area_m2", "tenant", "phone", "meter_serial", "meter_kind", "profile",
           "gateway", "address", "tariff", "billing_mode", "opening_balance")
REQUIRED = ("building", "floor", "room", "meter_serial")


@dataclass(frozen=True)
class Row:
    line: int
    building: str
    floor: str
    room: str
    area_m2: Decimal | None
    tenant: str
    phone: str
    meter: MeterSpec
    tariff: str | None
    billing_mode: str
    opening_balance_fen: int


@dataclass
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    rows: int = 0
    rooms_created: int = 0
    accounts_opened: int = 0
    meters_added: int = 0
    unchanged_rows: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {"rows": self.rows, "rooms_created": self.rooms_created, "accounts_opened": self.accounts_opened,
                "meters_added": self.meters_added, "unchanged_rows": self.unchanged_rows,
                "errors": [{"line": e.line, "reason": e.reason} for e in self.errors]}


# --- reading files ---------------------------------------------------------------------

def read_table(path: str | Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, {column: text}) from a CSV or .xlsx file; the header is line 1."""
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"{path}: no such file")
    if path.is_dir():
        raise ValidationError(f"{path}: is a folder; give a .csv or .xlsx file")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        yield from _read_xlsx(path)
    elif path.suffix.lower() in (".csv", ".txt", ""):
        yield from _read_csv(path)
    else:
        raise ValidationError(f"{path.name}: give a .csv or .xlsx file")


def _check_header(header: list[str]) -> list[str]:
    header = [(h or "").strip().lower().lstrip("\ufeff") for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ValidationError(f"header: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown:
        raise ValidationError(f"header: unknown column(s) {', '.join(unknown)}; expected {','.join(COLUMNS)}")
    return header


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        yield from _csv_rows(path)
    except UnicodeDecodeError:
        raise ValidationError(f"{path.name}: not UTF-8 text (save the sheet as CSV UTF-8, or as .xlsx)") from None
    except csv.Error as exc:
        raise ValidationError(f"{path.name}: not a readable CSV file ({exc})") from None


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = _check_header(next(reader))
        except StopIteration:
            raise ValidationError(f"{path.name}: the file is empty") from None
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                yield reader.line_num, {"__error__": f"{len(values)} fields, the header has {len(header)}"}
                continue
            yield reader.line_num, {h: (v or "").strip() for h, v in zip(header, values) if h}


def _read_xlsx(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError):
        raise ValidationError(f"{path.name}: not an .xlsx workbook") from None
    try:
        ws = wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        try:
            header = _check_header([str(h) if h is not None else "" for h in next(rows)])
        except StopIteration:
            raise ValidationError(f"{path.name}: the sheet is empty") from None
        for n, values in enumerate(rows, start=2):
            texts = [_cell_text(v) for v in values]
            if not any(texts):
                continue
            yield n, {h: t for h, t in zip(header, texts) if h}
    finally:
        wb.close()


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        # Excel stores numbers as floats; keep what a person typed ("12.50", "3") exactly.
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value).strip()


# --- parsing rows ----------------------------------------------------------------------

PHONE = re.compile(r"1[3-9]\d{9}")
GATEWAY_SCHEMES = ("tcp", "rtu+tcp")


def normalise_phone(text: str) -> str:
    """A mainland mobile number as 11 digits (spaces, dashes and a +86/0086 prefix dropped), or ""
    for an empty cell; ValidationError for anything else."""
    phone = re.sub(r"[\s\-()]", "", text or "")
    for prefix in ("+86", "0086"):
        if phone.startswith(prefix):
            phone = phone[len(prefix):]
    if not phone:
        return ""
    if not PHONE.fullmatch(phone):
        raise ValidationError(f"phone: {text.strip()!r} is not a mainland mobile number (11 digits, 1[3-9]...)",
                              field="phone")
    return phone


def check_gateway(ref: str) -> str:
    """A gateway cell: a gateway name, or a URL ``tcp://HOST:PORT`` / ``rtu+tcp://HOST:PORT`` with a
    host and a port 1-65535 (checked here, so a bad URL is refused at import, not at the first poll)."""
    ref = ref.strip()
    if "://" not in ref:
        return ref
    parsed = urlparse(ref)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in GATEWAY_SCHEMES or not parsed.hostname or not port or parsed.path not in ("", "/"):
        raise ValidationError(f"gateway: {ref!r} must look like tcp://HOST:PORT (port 1-65535), or name a "
                              "known gateway", field="gateway")
    return ref


def parse_row(line: int, raw: dict[str, str], profiles: Mapping[str, str] | None = None) -> Row:
    """One row, checked. ``profiles`` (meter profile name -> its meter kind) is what the fronts know
    of the hardware; with it an unknown profile or a kind that does not fit the profile is refused."""
    if "__error__" in raw:
        raise ValidationError(raw["__error__"])
    for col in REQUIRED:
        if not raw.get(col):
            raise ValidationError(f"{col}: must not be empty", field=col)
    area = None
    if raw.get("area_m2"):
        try:
            area = Decimal(raw["area_m2"])
        except InvalidOperation:
            raise ValidationError(f"area_m2: {raw['area_m2']!r} is not a number", field="area_m2") from None
        if not area.is_finite() or area <= 0:
            raise ValidationError(f"area_m2: must be positive (got {raw['area_m2']})", field="area_m2")
    profile_given = raw.get("profile") or ""
    if profiles is not None and profile_given and profile_given not in profiles:
        raise ValidationError(f"profile: unknown {profile_given!r}; known: {', '.join(sorted(profiles))}",
                              field="profile")
    kind = raw.get("meter_kind") or (profiles[profile_given] if profiles and profile_given else "electricity")
    if kind not in METER_KINDS:
        raise ValidationError(f"meter_kind: must be one of {', '.join(METER_KINDS)} (got {kind!r})",
                              field="meter_kind")
    mode = raw.get("billing_mode") or "prepaid-platform"
    if mode not in BILLING_MODES:
        raise ValidationError(f"billing_mode: must be one of {', '.join(BILLING_MODES)} (got {mode!r})",
                              field="billing_mode")
    opening = 0
    if raw.get("opening_balance"):
        opening = parse_yuan(raw["opening_balance"], field="opening_balance", allow_zero=True)
    address = raw.get("address") or "1"
    profile = profile_given or ("cjt188-water" if kind == "water" else "acrel-ddsy1352")
    if profiles is not None and profile in profiles and profiles[profile] != kind:
        raise ValidationError(f"meter_kind: {kind!r} does not fit profile {profile!r} "
                              f"({profiles[profile]} meters)", field="meter_kind")
    phone = normalise_phone(raw.get("phone") or "")
    gateway = check_gateway(raw["gateway"]) if raw.get("gateway") else None
    tenant = raw.get("tenant") or ""
    if not tenant and (opening or phone):
        raise ValidationError("tenant: a phone or opening balance needs a tenant name", field="tenant")
    return Row(line=line, building=raw["building"], floor=raw["floor"], room=raw["room"], area_m2=area,
               tenant=tenant, phone=phone,
               meter=MeterSpec(serial=raw["meter_serial"], kind=kind, profile=profile,
                               gateway=gateway, address=address),
               tariff=raw.get("tariff") or None, billing_mode=mode, opening_balance_fen=opening)


# --- applying rows ---------------------------------------------------------------------

def import_file(session: Session, site_name: str, path: str | Path, *, actor: str = "system", front: str = "cli",
                progress: Callable[[int], None] | None = None, create_site: bool = True,
                profiles: Mapping[str, str] | None = None) -> ImportReport:
    """Import a CSV or .xlsx file (see the module docstring). Raises ValidationError for a file
    that cannot be read, before anything is written; bad rows are in the report."""
    return import_rows(session, site_name, read_table(path), actor=actor, front=front, progress=progress,
                       create_site=create_site, profiles=profiles)


def import_rows(session: Session, site_name: str, rows: Iterable[tuple[int, dict[str, str]]], *,
                actor: str = "system", front: str = "cli", progress: Callable[[int], None] | None = None,
                create_site: bool = True, profiles: Mapping[str, str] | None = None) -> ImportReport:
    """Import rows grouped by room; each room is all-or-nothing. Commits as it goes.

    Every row is read and parsed first: a file-level error (raised by ``rows`` while it is read)
    leaves nothing written, not even the site."""
    parsed: list[tuple[dict[str, str], Row | RowError]] = []
    for line, raw in rows:
        try:
            parsed.append((raw, parse_row(line, raw, profiles)))
        except MeterpayError as exc:
            parsed.append((raw, RowError(line, exc.message)))
    site = find_site(session, site_name)
    if site is None:
        if not create_site:
            site_named(session, site_name)  # raises: blank or unknown
        site = Site(name=site_name, settings={})
        session.add(site)
        session.commit()
    report = ImportReport()
    group: list[Row] = []
    group_errors: list[RowError] = []

    def flush_group() -> None:
        if group or group_errors:
            _apply_room(session, site, group, group_errors, report, actor=actor, front=front)
        group.clear()
        group_errors.clear()

    current: tuple[str | None, str | None, str | None] | None = None
    for raw, row in parsed:
        report.rows += 1
        room_key: tuple[str | None, str | None, str | None] = (
            (row.building, row.floor, row.room) if isinstance(row, Row)
            else (raw.get("building"), raw.get("floor"), raw.get("room")))
        if room_key != current:
            flush_group()
            current = room_key
        if isinstance(row, RowError):
            group_errors.append(row)
        else:
            group.append(row)
        if progress:
            progress(1)
    flush_group()
    return report


def _apply_room(session: Session, site: Site, rows: list[Row], errors: list[RowError], report: ImportReport,
                *, actor: str, front: str) -> None:
    if errors:
        # A bad row spoils its room: nothing of the room goes in, every row of it is reported.
        report.errors.extend(errors)
        report.errors.extend(RowError(r.line, "not imported: another row of this room is invalid") for r in rows)
        return
    first = rows[0]
    before = (report.rooms_created, report.accounts_opened, report.meters_added)
    try:
        with session.begin_nested():
            room, created = _room(session, site, first)
            report.rooms_created += created
            _account_and_meters(session, site, room, rows, report, actor=actor, front=front)
        session.commit()
    except MeterpayError as exc:
        session.rollback()
        report.rooms_created, report.accounts_opened, report.meters_added = before
        report.errors.append(RowError(_blame(rows, exc), exc.message))
        report.errors.extend(RowError(r.line, "not imported: another row of this room failed")
                             for r in rows if r.line != _blame(rows, exc))
        return
    if (report.rooms_created, report.accounts_opened, report.meters_added) == before:
        report.unchanged_rows += len(rows)


def _blame(rows: list[Row], exc: MeterpayError) -> int:
    line = exc.details.get("line") if exc.details else None
    return line or rows[0].line


def _room(session: Session, site: Site, row: Row) -> tuple[Room, bool]:
    building = session.scalar(select(Building).where(Building.site_id == site.id, Building.name == row.building))
    if building is None:
        building = Building(site_id=site.id, name=row.building)
        session.add(building)
        session.flush()
    floor = session.scalar(select(Floor).where(Floor.building_id == building.id, Floor.name == row.floor))
    if floor is None:
        floor = Floor(building_id=building.id, name=row.floor)
        session.add(floor)
        session.flush()
    room = session.scalar(select(Room).where(Room.site_id == site.id, Room.number == row.room))
    if room is not None:
        if room.floor_id != floor.id:
            raise ValidationError(f"room: {row.room} exists already on another floor", field="room", line=row.line)
        if row.area_m2 is not None and room.area_m2 != row.area_m2:
            room.area_m2 = row.area_m2
        return room, False
    room = Room(site_id=site.id, floor_id=floor.id, number=row.room, area_m2=row.area_m2)
    session.add(room)
    session.flush()
    return room, True


def _account_and_meters(session: Session, site: Site, room: Room, rows: list[Row], report: ImportReport,
                        *, actor: str, front: str) -> None:
    first = rows[0]
    for r in rows[1:]:
        if (r.tenant, r.phone, r.billing_mode) != (first.tenant, first.phone, first.billing_mode):
            raise ValidationError("rows of one room must name the same tenant, phone and billing_mode", line=r.line)
    # The room's opening balance may be repeated on each of its rows (one row per meter): it is
    # the account's, counted once. Rows naming different amounts are a question, not a sum.
    amounts = {r.opening_balance_fen for r in rows if r.opening_balance_fen}
    if len(amounts) > 1:
        given = [r for r in rows if r.opening_balance_fen]
        other = next(r for r in given if r.opening_balance_fen != given[0].opening_balance_fen)
        named = ", ".join(format_fen(a) for a in sorted(amounts))
        raise ValidationError(f"opening_balance: rows of room {first.room} name different opening balances "
                              f"({named}); give it once or the same on each row",
                              field="opening_balance", line=other.line)
    opening = amounts.pop() if amounts else 0
    if not first.tenant:
        # A room without a tenant: meters are registered, no account is opened; a row's tariff is
        # its meter's own plan (set when the meter has none: a re-import changes nothing).
        for r in rows:
            if r.tariff:
                _check_tariff(session, site, r)
        for r in rows:
            meter = session.scalar(select(Meter).where(Meter.serial == r.meter.serial))
            if meter is None:
                try:
                    meter = attach_meter(session, site.id, room.id, None, r.meter)
                except MeterpayError as exc:
                    exc.details["line"] = r.line
                    raise
                report.meters_added += 1
            if r.tariff and meter.tariff_plan_id is None:
                meter.tariff_plan_id = _assign(session, site, r, meter.kind, actor=actor, front=front)
        return
    tariffs = _tariffs_by_kind(session, site, rows)
    account = session.scalar(select(Account).where(Account.room_id == room.id, Account.status == "open"))
    if account is not None:
        tenant = get_existing(session, Tenant, account.tenant_id)
        if (tenant.name, tenant.phone) != (first.tenant, first.phone):
            raise ValidationError(f"room {room.number} already has an open account for {tenant.name}",
                                  field="tenant", line=first.line)
        joined = []
        for r in rows:
            meter = session.scalar(select(Meter).where(Meter.serial == r.meter.serial))
            if meter is None or meter.account_id != account.id:
                try:
                    joined.append(attach_meter(session, site.id, room.id, account.id, r.meter).id)
                except MeterpayError as exc:
                    exc.details["line"] = r.line
                    raise
                report.meters_added += 1
        if joined:  # a meter joining the account starts the account's own tier cycle on it
            billing.lock_states(session, joined)
            billing.start_tenancy(session, joined)
        session.flush()
        session.refresh(account)
        # A utility the account has no plan for takes the file's; a plan set already stays (a
        # tariff changes through change_tariff, not by importing the sheet again).
        for kind, (name, line) in sorted(tariffs.items()):
            if account.plan_id_for(kind) is None:
                try:
                    change_tariff(session, account.id, name, utility=kind, actor=actor, front=front)
                except MeterpayError as exc:
                    exc.details["line"] = line
                    raise
        return
    for r in rows:
        existing = session.scalar(select(Meter).where(Meter.serial == r.meter.serial))
        if existing is None:
            report.meters_added += 1
    try:
        open_account(session, OpenAccountRequest(
            room_id=room.id, tenant_name=first.tenant, tenant_phone=first.phone,
            meters=tuple(r.meter for r in rows), tariffs={k: name for k, (name, _line) in tariffs.items()},
            billing_mode=first.billing_mode, opening_balance_fen=opening or None), actor=actor, front=front)
    except MeterpayError as exc:
        raise exc
    report.accounts_opened += 1


def _tariffs_by_kind(session: Session, site: Site, rows: list[Row]) -> dict[str, tuple[str, int]]:
    """meter kind -> (plan name, line naming it): the rows of one kind agree (a blank cell defers to
    a filled one), and every plan named exists and fits its row's kind. Writes nothing."""
    found: dict[str, tuple[str, int]] = {}
    for r in rows:
        if not r.tariff:
            continue
        kind = _check_tariff(session, site, r)
        if kind in found and found[kind][0] != r.tariff:
            word = "water meters" if kind == "water" else "electricity meters"
            raise ValidationError(f"tariff: rows of room {r.room} name different tariffs for its {word} "
                                  f"({found[kind][0]!r}, {r.tariff!r})", field="tariff", line=r.line)
        found[kind] = (r.tariff, r.line)
    return found


def _check_tariff(session: Session, site: Site, row: Row) -> str:
    """The row's meter kind, once its tariff is known to exist and to fit that kind."""
    kind = _kind(session, row)
    try:
        plan_for(session, row.tariff or "", site_id=site.id, utility=kind, copy=False)
    except MeterpayError as exc:
        exc.details["line"] = row.line
        raise
    return kind


def _kind(session: Session, row: Row) -> str:
    """The kind of the row's meter: the stored meter's when it exists (that is what is priced)."""
    kind = session.scalar(select(Meter.kind).where(Meter.serial == row.meter.serial.strip()))
    return kind or row.meter.kind


def _assign(session: Session, site: Site, row: Row, kind: str, *, actor: str, front: str) -> int:
    try:
        return plan_for(session, row.tariff or "", site_id=site.id, utility=kind, actor=actor, front=front).id
    except MeterpayError as exc:
        exc.details["line"] = row.line
        raise
