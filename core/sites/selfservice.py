"""What a tenant sees of their own accounts: bindings by QR code, balance, meters, usage, transactions.

Every read takes the tenant's ``openid`` and answers NotFound for an account or order the
tenant is not bound to, so a probe cannot tell "not yours" from "does not exist".
"""
from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from core import audit, ledger
from core.alarms import status
from core.alarms.shown import ShownBalance, meter_shown, shown_balance, shown_fee_status
from core.db import get_existing
from core.errors import Forbidden, NotFound, ValidationError
from core.ledger import balance_cache
from core.models import (
    Account,
    Building,
    Floor,
    JournalEntry,
    LedgerAccount,
    Meter,
    PaymentOrder,
    Posting,
    Reading,
    Room,
    Site,
    Tenant,
    TenantBinding,
)

MAX_DAYS = 366
MAX_BIND_FAILURES = 5
MAX_MONTHS = 36
MAX_YEARS = 10


# --- binding ----------------------------------------------------------------------------

def bind(session: Session, openid: str, room_id: int, phone_last4: str) -> Account:
    """Bind the WeChat user to the open account of a room, proven by the last 4 digits of its phone."""
    if not isinstance(phone_last4, str) or len(phone_last4) != 4 or not phone_last4.isdigit():
        raise ValidationError("phone_last4: give the last four digits of the phone on the account",
                              field="phone_last4")
    account = session.scalar(select(Account).where(Account.room_id == room_id, Account.status == "open")
                             .order_by(Account.id.desc()))
    if account is None:
        raise NotFound("this room has no open account")
    tenant = get_existing(session, Tenant, account.tenant_id)
    phone = "".join(ch for ch in (tenant.phone or "") if ch.isdigit())
    _check_attempts(session, openid)
    if len(phone) < 4 or phone[-4:] != phone_last4:
        # Kept in a transaction of its own: the caller's is rolled back by the error below.
        from core.db import session_scope
        with session_scope() as own:
            audit.record(own, actor=f"openid:{openid}", front="miniapp", action="binding_refused",
                         site_id=account.site_id, account_id=account.id)
        raise Forbidden("the phone digits do not match this room's account", field="phone_last4")
    existing = session.scalar(select(TenantBinding).where(TenantBinding.openid == openid,
                                                          TenantBinding.account_id == account.id))
    if existing is None:
        try:
            with session.begin_nested():
                session.add(TenantBinding(openid=openid, account_id=account.id, tenant_id=tenant.id))
        except IntegrityError:
            pass
        if not tenant.wechat_openid:
            tenant.wechat_openid = openid
        audit.record(session, actor=f"openid:{openid}", front="miniapp", action="binding",
                     site_id=account.site_id, account_id=account.id)
    return account


def _check_attempts(session: Session, openid: str) -> None:
    """Four digits are guessable: after MAX_BIND_FAILURES wrong tries in an hour, refuse for a while."""
    from sqlalchemy import func

    from core.models import AuditLog
    from core.utils import utcnow
    failures = session.scalar(select(func.count()).select_from(AuditLog).where(
        AuditLog.actor == f"openid:{openid}", AuditLog.action == "binding_refused",
        AuditLog.at >= utcnow() - timedelta(hours=1)))
    if (failures or 0) >= MAX_BIND_FAILURES:
        raise Forbidden("too many wrong phone digits; try again in an hour", field="phone_last4")


def unbind(session: Session, openid: str, account_id: int) -> None:
    row = session.scalar(select(TenantBinding).where(TenantBinding.openid == openid,
                                                     TenantBinding.account_id == account_id))
    if row is None:
        raise NotFound(f"no account {account_id}")
    session.delete(row)  # the flush notifies every process's balance cache (core.ledger.balance_cache)


def account_for(session: Session, openid: str, account_id: int) -> Account:
    account = session.scalar(select(Account).join(TenantBinding, and_(TenantBinding.account_id == Account.id,
                                                                      TenantBinding.openid == openid))
                             .where(Account.id == account_id))
    if account is None:
        raise NotFound(f"no account {account_id}")
    return account


def accounts_of(session: Session, openid: str) -> list[Account]:
    return list(session.scalars(select(Account).join(TenantBinding, TenantBinding.account_id == Account.id)
                                .where(TenantBinding.openid == openid).order_by(Account.id)))


def bound_balance(openid: str, account_id: int) -> ShownBalance | None:
    """The shown balance (``core.alarms.shown``) of an account the openid is bound to (the hot
    path); None if not bound.

    Runs on an autocommit connection: one round trip, no BEGIN/ROLLBACK around a single read.
    On PostgreSQL a bound wallet balance is kept in this process's ``core.ledger.balance_cache``
    (exact through LISTEN/NOTIFY: a committed posting or unbinding drops the entry), so a repeated
    read costs no round trip at all. A prepaid-meter account shows its meter's remaining amount,
    which a poll changes without a posting, so it is never cached: a second statement reads the
    credit meter (the rule of ``core.alarms.shown.credit_meter``: first active electricity meter,
    else first active meter).
    """
    engine, key = _read_engine_and_key()
    if engine.dialect.name == "postgresql":
        cache = balance_cache.cache_for(key, lambda: engine.dialect.create_connect_args(engine.url))
        token = None
        if cache is not None:
            hit = cache.get(openid, account_id)  # only wallet-shown balances are ever stored
            if hit is not None:
                return ShownBalance(hit)
            token = cache.begin()
        row = _pg_fetchone(engine, _BOUND_BALANCE_SQL, (openid, account_id))
        if row is None:
            return None
        balance, wallet_id, mode = int(row[0]), int(row[1]), row[2]
        if mode != "prepaid-meter":
            if cache is not None:
                cache.store(token, openid, account_id, wallet_id, balance)
            return ShownBalance(balance)
        meter = _pg_fetchone(engine, _CREDIT_METER_SQL, (account_id,))
        if meter is None:
            return meter_shown(balance, None, None)
        return meter_shown(balance, meter[0], meter[1].astimezone(UTC) if meter[1] is not None else None)
    for attempt in (1, 2):
        try:
            with engine.connect() as conn:
                found = conn.execute(_BOUND_BALANCE, {"openid": openid, "account_id": account_id}).first()
                if found is None:
                    return None
                if found[1] != "prepaid-meter":
                    return ShownBalance(int(found[0]))
                meter = conn.execute(_CREDIT_METER, {"account_id": account_id}).first()
                if meter is None:
                    return meter_shown(int(found[0]), None, None)
                return meter_shown(int(found[0]), meter[0], meter[1])
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    return None


def bound_balance_fen(openid: str, account_id: int) -> int | None:
    """``bound_balance(...).fen``: the shown balance in fen; None if not bound (or a prepaid meter never read)."""
    shown = bound_balance(openid, account_id)
    return None if shown is None else shown.fen


_BOUND_BALANCE_SQL = ("SELECT l.balance_fen, l.id, a.billing_mode FROM ledger_accounts l JOIN tenant_bindings b "
                      "ON b.account_id = l.account_id JOIN accounts a ON a.id = l.account_id "
                      "WHERE b.openid = %s AND b.account_id = %s")
_CREDIT_METER_SQL = ("SELECT remaining_fen, remaining_read_at FROM meters WHERE account_id = %s AND status = 'active' "
                     "ORDER BY kind <> 'electricity', id LIMIT 1")


def _pg_fetchone(engine: Engine, sql: str, params: tuple) -> tuple | None:
    """One row of a read as a server-side prepared statement on the pooled DBAPI connection: the
    hot path skips SQLAlchemy's statement compilation and result machinery (about 0.14 ms of
    CPU a request). A connection that died is dropped and the read tried once on a fresh one."""
    for attempt in (1, 2):
        conn: Any = engine.raw_connection()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params, prepare=True)
                row = cur.fetchone()
        except Exception as exc:
            conn.invalidate(exc)
            if attempt == 2 or not _is_disconnect(exc):
                raise
            continue
        finally:
            conn.close()
        return None if row is None else tuple(row)
    return None


def _is_disconnect(exc: Exception) -> bool:
    import psycopg
    return isinstance(exc, psycopg.OperationalError)


_BOUND_BALANCE = (select(LedgerAccount.balance_fen, Account.billing_mode)
                  .join(TenantBinding, TenantBinding.account_id == LedgerAccount.account_id)
                  .join(Account, Account.id == LedgerAccount.account_id)
                  .where(TenantBinding.openid == bindparam("openid"),
                         TenantBinding.account_id == bindparam("account_id")))
_CREDIT_METER = (select(Meter.remaining_fen, Meter.remaining_read_at)
                 .where(Meter.account_id == bindparam("account_id"), Meter.status == "active")
                 .order_by(Meter.kind != "electricity", Meter.id).limit(1))
_read_engines: dict[str, Engine] = {}
_read_lock = threading.Lock()
_read_last: tuple[Engine, Engine, str] | None = None   # (shared engine, read engine, key): the hot path's shortcut


def _read_engine() -> Engine:
    return _read_engine_and_key()[0]


def _read_engine_and_key() -> tuple[Engine, str]:
    """An autocommit engine for single-statement reads, without the per-checkout ping.

    The shared engine pings each connection it hands out (a round trip that doubles the cost of
    a one-query request). Here a dead connection shows up as an invalidating error instead, and
    ``bound_balance_fen`` retries once on a fresh one; connections are recycled every 5 minutes.
    """
    global _read_last
    from core.db import get_engine
    shared = get_engine()
    last = _read_last
    if last is not None and last[0] is shared:
        return last[1], last[2]
    url = shared.url
    key = url.render_as_string(hide_password=False)
    if url.get_backend_name() == "sqlite":
        engine = shared  # an SQLite engine is the shared one (one file, one pool)
    else:
        with _read_lock:
            cached = _read_engines.get(key)
            if cached is None:
                cached = _read_engines[key] = create_engine(url, pool_size=5, max_overflow=10, pool_recycle=300,
                                                            isolation_level="AUTOCOMMIT")
            engine = cached
    _read_last = (shared, engine, key)
    return engine, key


def order_for(session: Session, openid: str, order_no: str) -> PaymentOrder:
    order = session.scalar(select(PaymentOrder).join(TenantBinding, and_(
        TenantBinding.account_id == PaymentOrder.account_id, TenantBinding.openid == openid))
        .where(PaymentOrder.order_no == order_no))
    if order is None:
        raise NotFound(f"no order {order_no}")
    return order


# --- views ------------------------------------------------------------------------------

@dataclass(frozen=True)
class UsagePoint:
    period: str          # "2026-11-27", "2026-11" or "2026"
    usage: Decimal       # kWh or m3, summed over the account's meters of that kind
    cost_fen: int        # consumption of that kind deducted in the period
    # What each utility cost in the period (fen): {"electricity": .., "water": ..} (issue 15)
    spending_fen: dict[str, int] | None = None


def balance_fen(session: Session, account_id: int) -> int:
    """The wallet's balance (money paid in; for a prepaid-meter account not what it shows: see ``shown``)."""
    return ledger.account_balance(session, account_id)


def shown(session: Session, account: Account) -> ShownBalance:
    """The balance the account shows (``core.alarms.shown``): its wallet, or a prepaid meter's remaining amount."""
    return shown_balance(session, account)


def site_zone(session: Session, account: Account) -> ZoneInfo:
    site = session.get(Site, account.site_id)
    return ZoneInfo(site.timezone if site else "Asia/Shanghai")


def room_label(session: Session, account: Account) -> dict:
    row = session.execute(select(Room.number, Floor.name, Building.name, Site.name)
                          .join(Floor, Floor.id == Room.floor_id).join(Building, Building.id == Floor.building_id)
                          .join(Site, Site.id == Room.site_id).where(Room.id == account.room_id)).one()
    return {"room": row[0], "floor": row[1], "building": row[2], "site": row[3]}


def summary(session: Session, account: Account, *, today: date | None = None) -> dict:
    tz = site_zone(session, account)
    today = today or datetime.now(tz).date()
    bal = shown(session, account)
    site = session.get(Site, account.site_id)
    levels = status.alarm_levels(account.alarm_levels, site.settings if site else None)
    meters = list(session.scalars(select(Meter).where(Meter.account_id == account.id, Meter.status == "active")
                                  .order_by(Meter.id)))
    points = usage(session, account, "day", today, today)
    kinds = [k for k in QUANTUM if any(m.kind == k for m in meters)]
    return {
        "balance_fen": bal.fen,
        "balance": bal,
        "status": account.status,
        "fee_status": shown_fee_status(bal, levels, keep_power=account.keep_power, closed=account.status != "open"),
        "billing_mode": account.billing_mode,
        "meters": [{"serial": m.serial, "kind": m.kind, "online": bool(m.online), "relay_state": m.relay_state,
                    "valve_state": m.valve_state, "remaining_fen": m.remaining_fen,
                    "last_seen_at": m.last_seen_at} for m in meters],
        "today": points[0] if points else UsagePoint(today.isoformat(), Decimal("0.00"), 0),
        "tariffs": [tariff_info(session, account, k, today) for k in kinds],
        **room_label(session, account),
    }


def tariff_info(session: Session, account: Account, utility: str, today: date | None = None,
                cache: balance_cache.BalanceCache | None = None) -> dict:
    """The plan pricing the account's ``utility`` and its price now: ``{"utility", "plan", "unit",
    "price"}`` (``plan`` and ``price`` None: no plan, usage waits to be billed).

    ``cache``: this process's ``balance_cache`` for the session's database, which keeps plan
    summaries exact (dropped when a plan or version is written): a hit costs no statement."""
    from core.models.meter import UTILITY_UNIT
    from core.tariffs.store import plan_summary
    from core.utils import site_tz
    plan_id = account.plan_id_for(utility)
    if cache is not None and plan_id is not None:
        today = today or datetime.now(site_tz()).date()
        found = cache.get_plan(plan_id, today)
        if found is None:
            token = cache.begin()
            found = plan_summary(session, plan_id, today)
            if found is not None:
                cache.store_plan(token, plan_id, today, found)
    else:
        found = plan_summary(session, plan_id, today)
    if found is None:
        return {"utility": utility, "plan": None, "unit": UTILITY_UNIT[utility], "price": None}
    return {"utility": utility, "plan": found["plan"], "unit": found["unit"], "price": found["price"]}


def _periods(granularity: str, start: date, end: date) -> list[tuple[str, date, date]]:
    if granularity not in ("day", "month", "year"):
        raise ValidationError("granularity: must be day, month or year", field="granularity")
    for name, value in (("start", start), ("end", end)):
        if not date(2000, 1, 1) <= value <= date(2099, 12, 31):
            raise ValidationError(f"{name}: must be between 2000-01-01 and 2099-12-31", field=name)
    if end < start:
        raise ValidationError("end: must not be before start", field="end")
    out = []
    if granularity == "day":
        if (end - start).days + 1 > MAX_DAYS:
            raise ValidationError(f"range: at most {MAX_DAYS} days", field="end")
        d = start
        while d <= end:
            out.append((d.isoformat(), d, d + timedelta(days=1)))
            d += timedelta(days=1)
    elif granularity == "month":
        d = start.replace(day=1)
        while d <= end:
            nxt = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
            out.append((d.strftime("%Y-%m"), d, nxt))
            d = nxt
            if len(out) > MAX_MONTHS:
                raise ValidationError(f"range: at most {MAX_MONTHS} months", field="end")
    else:
        if end.year - start.year + 1 > MAX_YEARS:
            raise ValidationError(f"range: at most {MAX_YEARS} years", field="end")
        out = [(str(y), date(y, 1, 1), date(y + 1, 1, 1)) for y in range(start.year, end.year + 1)]
    return out


QUANTUM = {"electricity": Decimal("0.01"), "water": Decimal("0.001")}


def usage(session: Session, account: Account, granularity: str, start: date, end: date,
          kind: str = "electricity", *, tz: ZoneInfo | None = None) -> list[UsagePoint]:
    """Usage of one kind (kWh or m3) per day, month or year, from register differences, the cost
    (consumption of that kind) deducted in each period and what each utility cost (``spending_fen``).

    Two statements (the readings of every meter of that kind, the spending), three when ``tz``
    (the site's time zone) is not given."""
    if kind not in QUANTUM:
        raise ValidationError("kind: must be electricity or water", field="kind")
    periods = _periods(granularity, start, end)
    tz = tz or site_zone(session, account)

    def at(d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=tz)
    t0, t1 = at(periods[0][1]), at(periods[-1][2])
    used: dict[str, Decimal] = defaultdict(Decimal)
    for before, rows in _readings_by_meter(session, account.id, kind, t0, t1):
        last = before
        i = 0
        for label, _p0, p1 in periods:
            end_at = at(p1)
            period_last = None
            while i < len(rows) and rows[i].taken_at < end_at:
                period_last = rows[i].total
                if last is None:
                    last = rows[i].total
                i += 1
            if period_last is not None and last is not None:
                used[label] += max(Decimal(period_last) - Decimal(last), Decimal(0))
                last = period_last
    spending = spending_fen(session, account, periods)
    q = QUANTUM[kind]
    return [UsagePoint(label, used.get(label, Decimal(0)).quantize(q), spending[label].get(kind, 0),
                       spending[label]) for label, _, _ in periods]


def _readings_by_meter(session: Session, account_id: int, kind: str, t0: datetime,
                       t1: datetime) -> list[tuple[Any, list]]:
    """For each meter of ``kind`` on the account: (the last good total before ``t0`` or None, its
    good readings in [t0, t1) oldest first, as rows with ``taken_at`` and ``total``): one statement."""
    found: dict[int, tuple[Any, list]] = {}
    ranged: list = []
    row: Any
    for row in session.execute(_READINGS, {"account_id": account_id, "kind": kind, "t0": t0, "t1": t1}):
        if row.taken_at is None:
            found[row.meter_id] = (row.total, [])
        else:
            ranged.append(row)
    for row in sorted(ranged, key=lambda r: r.taken_at):
        found[row.meter_id][1].append(row)
    return [found[mid] for mid in sorted(found)]


def _readings_statement():
    from sqlalchemy import null, union_all
    account_id, kind, t0 = bindparam("account_id"), bindparam("kind"), bindparam("t0")
    before = (select(Reading.total).where(Reading.meter_id == Meter.id, Reading.taken_at < t0, Reading.status == "ok")
              .order_by(Reading.taken_at.desc()).limit(1).scalar_subquery())
    in_range = (select(Reading.meter_id, Reading.taken_at, Reading.total)
                .join(Meter, Meter.id == Reading.meter_id)
                .where(Meter.account_id == account_id, Meter.kind == kind, Reading.taken_at >= t0,
                       Reading.taken_at < bindparam("t1"), Reading.status == "ok"))
    befores = select(Meter.id, null(), before).where(Meter.account_id == account_id, Meter.kind == kind)
    return union_all(in_range, befores)


# Built once (the hot path): building a statement per request cost more CPU than running it.
_READINGS = _readings_statement()
_ACCOUNT_AND_ZONE = (select(Account, Site.timezone)
                     .join(TenantBinding, and_(TenantBinding.account_id == Account.id,
                                               TenantBinding.openid == bindparam("openid")))
                     .outerjoin(Site, Site.id == Account.site_id)
                     .where(Account.id == bindparam("account_id")))


def usage_view(openid: str, account_id: int, granularity: str, start: date, end: date,
               kind: str = "electricity") -> tuple[list[UsagePoint], dict]:
    """The usage chart of an account the openid is bound to: (``usage(...)`` points, ``tariff_info``).

    Four reads on an autocommit connection (no BEGIN, ROLLBACK or pool ping around them): the
    account with its site's time zone, the readings, the spending, the plan with its versions;
    three on PostgreSQL once this process's ``balance_cache`` holds the plan's summary.
    Raises NotFound if the openid is not bound to the account (or ValidationError, as ``usage``)."""
    engine, key = _read_engine_and_key()
    cache = None
    if engine.dialect.name == "postgresql":
        cache = balance_cache.cache_for(key, lambda: engine.dialect.create_connect_args(engine.url))
    for attempt in (1, 2):
        try:
            with Session(engine) as session:
                row = session.execute(_ACCOUNT_AND_ZONE, {"openid": openid, "account_id": account_id}).first()
                if row is None:
                    raise NotFound(f"no account {account_id}")
                account, zone = row
                points = usage(session, account, granularity, start, end, kind,
                               tz=ZoneInfo(zone or "Asia/Shanghai"))
                return points, tariff_info(session, account, kind, cache=cache)
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


def spending_fen(session: Session, account: Account, periods: list[tuple[str, date, date]]) -> dict[str, dict]:
    """What each utility cost the account per period (fen), from the report rollup ``ledger_days``:
    the consumption posted to ``revenue:<utility>``, dated by the reading that closed each billed
    interval (issue 15), so it agrees with the finance reports to the fen."""
    rows = session.execute(_SPENDING, {"account_id": account.id, "d0": periods[0][1], "d1": periods[-1][2]})
    out: dict[str, dict] = {label: dict.fromkeys(QUANTUM, 0) for label, _, _ in periods}
    for day, code, amount in rows:
        label = next(label for label, p0, p1 in periods if p0 <= day < p1)
        out[label][code.split(":", 1)[1]] += int(amount)
    return out


def _spending_statement():
    from core.models.report import LedgerDay
    return (select(LedgerDay.day, LedgerAccount.code, LedgerDay.amount_fen)
            .join(LedgerAccount, LedgerAccount.id == LedgerDay.ledger_account_id)
            .where(LedgerDay.account_id == bindparam("account_id"), LedgerDay.day >= bindparam("d0"),
                   LedgerDay.day < bindparam("d1"), LedgerAccount.code.in_([f"revenue:{k}" for k in QUANTUM])))


_SPENDING = _spending_statement()


def transactions(session: Session, account: Account, *, limit: int = 20, before_id: int | None = None) -> list[dict]:
    """The wallet's entries, newest first: what moved, when, and the balance effect in fen."""
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise ValidationError("limit: 1 to 100", field="limit")
    wallet = session.scalar(select(LedgerAccount.id).where(LedgerAccount.account_id == account.id))
    stmt = (select(JournalEntry.id, JournalEntry.kind, JournalEntry.memo, JournalEntry.created_at, Posting.amount_fen)
            .join(Posting, Posting.entry_id == JournalEntry.id).where(Posting.ledger_account_id == wallet)
            .order_by(JournalEntry.id.desc()).limit(limit))
    if before_id is not None:
        stmt = stmt.where(JournalEntry.id < before_id)
    return [{"id": r.id, "kind": r.kind, "memo": r.memo, "at": r.created_at, "amount_fen": int(r.amount_fen)}
            for r in session.execute(stmt)]
