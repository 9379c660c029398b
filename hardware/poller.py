"""The poller: read every due meter, mirror what it says, and hand readings to billing.

``poll_due()`` is the periodic job (every minute; meterpay/periodic.py). A site is due once per
``Site.settings["poll_interval_minutes"]`` (default 15): the slot is claimed in Redis with SET
NX when METERPAY_REDIS_URL is set, so several schedulers/workers poll a site once per slot.
All gateways of the due sites are read in parallel (one asyncio task each); the meters of one
gateway one after another, each read under the gateway's bus lock so commands can slip in
between. Results are then written in one transaction: Meter.live/relay/valve/balance mirror,
online/offline with events, and ``core.billing.ingest(..., source="poll")`` for each reading.
A failed read is never a reading. Mirrored values are dated by when the read began: a round
stored after a newer confirmation or reading leaves those newer values alone (the reading itself
is still billed). A relay/valve that disagrees with the desired supply is alarmed and commanded
again (``core.supply.enforce``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select

from core.db import session_scope
from core.jobs import observe
from core.models import Gateway, Meter, Site
from core.supply import enforce
from core.utils import utcnow
from hardware import aio, profiles, settings
from hardware.availability import record_failure, record_success
from hardware.buslock import bus_lock
from hardware.errors import GatewayDown, HardwareError
from hardware.transports import LinkStats, open_link
from hardware.values import MeterValues

log = logging.getLogger(__name__)

_local_slots: dict[int, int] = {}


@dataclass(frozen=True)
class Target:
    meter_id: int
    profile: str
    address: str
    url: str
    protocol: str


@dataclass
class Result:
    target: Target
    taken_at: datetime
    values: MeterValues | None = None
    error: str | None = None
    # When the read began (UTC, microseconds kept): what the mirrored values are dated by, so a
    # round stored after a newer confirmation or reading changes none of them.
    read_at: datetime | None = None


@dataclass
class RoundReport:
    meters: int = 0
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    read_seconds: float = 0.0
    store_seconds: float = 0.0
    billing: dict = field(default_factory=lambda: defaultdict(int))
    stats: LinkStats = field(default_factory=LinkStats)

    def as_dict(self) -> dict:
        return {"meters": self.meters, "ok": self.ok, "failed": self.failed, "seconds": round(self.seconds, 3),
                "read_seconds": round(self.read_seconds, 3), "store_seconds": round(self.store_seconds, 3),
                "billing": dict(self.billing), "link": self.stats.as_dict()}


def poll_interval_minutes(site: Site) -> int:
    raw = (site.settings or {}).get("poll_interval_minutes", settings.default_poll_minutes())
    try:
        return max(1, int(raw))
    except (TypeError, ValueError):
        log.warning("site %s has a bad poll_interval_minutes %r; using the default", site.id, raw)
        return settings.default_poll_minutes()


def _claim_slot(site_id: int, minutes: int, now: float) -> bool:
    slot = int(now // (minutes * 60))
    from core.config import get_settings
    if get_settings().redis_url:
        from core.jobs import redis_connection
        return bool(redis_connection().set(f"meterpay:poll:site:{site_id}:{slot}", "1", nx=True, ex=minutes * 120))
    if _local_slots.get(site_id) == slot:
        return False
    _local_slots[site_id] = slot
    return True


def poll_due() -> dict:
    """Periodic job: poll the meters of every site whose poll slot has come.

    Without Redis the round runs here. With Redis (RQ workers), more than
    METERPAY_POLL_SHARD_GATEWAYS gateways are split into ``poll_gateways`` jobs on queue
    "meters", so several workers poll one round side by side (bus locks keep each bus serial).
    """
    now = time.time()
    with session_scope() as s:
        sites = [site.id for site in s.scalars(select(Site)) if _claim_slot(site.id, poll_interval_minutes(site), now)]
        gateway_ids = list(s.scalars(select(Gateway.id).where(Gateway.site_id.in_(sites)).order_by(Gateway.id))) \
            if sites else []
    if not sites:
        return RoundReport().as_dict()
    from core.config import get_settings
    shard = settings.poll_shard_gateways()
    if not get_settings().redis_url or len(gateway_ids) <= shard:
        return poll(site_ids=sites).as_dict()
    from core.jobs import enqueue
    shards = [gateway_ids[i:i + shard] for i in range(0, len(gateway_ids), shard)]
    for part in shards:
        enqueue("hardware.poller.poll_gateways", part, queue="meters", timeout=900)
    return {"shards": len(shards), "gateways": len(gateway_ids)}


def poll_gateways(gateway_ids: list[int]) -> dict:
    """Job: one shard of a poll round (the meters behind these gateways)."""
    return poll(gateway_ids=gateway_ids).as_dict()


def poll(*, site_ids: list[int] | None = None, meter_ids: list[int] | None = None,
         gateway_ids: list[int] | None = None) -> RoundReport:
    """Poll now: the meters of these sites / meters / gateways (or every meter) and store the results."""
    targets = load_targets(site_ids=site_ids, meter_ids=meter_ids, gateway_ids=gateway_ids)
    t0 = time.perf_counter()
    results, stats = aio.run(read_all(targets))
    t1 = time.perf_counter()
    report = store(results)
    report.stats = stats
    report.seconds = time.perf_counter() - t0
    report.read_seconds, report.store_seconds = t1 - t0, report.seconds - (t1 - t0)
    log.info("poll round: %s", report.as_dict())
    return report


def load_targets(*, site_ids=None, meter_ids=None, gateway_ids=None) -> list[Target]:
    with session_scope() as s:
        q = (select(Meter.id, Meter.profile, Meter.address, Gateway.url, Gateway.protocol)
             .join(Gateway, Meter.gateway_id == Gateway.id).where(Meter.status == "active"))
        if site_ids is not None:
            q = q.where(Meter.site_id.in_(site_ids))
        if meter_ids is not None:
            q = q.where(Meter.id.in_(meter_ids))
        if gateway_ids is not None:
            q = q.where(Meter.gateway_id.in_(gateway_ids))
        return [Target(*row) for row in s.execute(q.order_by(Gateway.id, Meter.id))]


async def read_all(targets: list[Target]) -> tuple[list[Result], LinkStats]:
    """Read every target: gateways in parallel, each gateway's meters in turn."""
    by_gateway: dict[tuple[str, str], list[Target]] = defaultdict(list)
    for t in targets:
        by_gateway[(t.url, t.protocol)].append(t)
    total = LinkStats()
    runs = await asyncio.gather(*(read_gateway(url, protocol, ts, total) for (url, protocol), ts in
                                  by_gateway.items()))
    return [r for run in runs for r in run], total


async def read_gateway(url: str, protocol: str, targets: list[Target], total: LinkStats | None = None) -> list[Result]:
    results: list[Result] = []
    started = time.perf_counter()
    try:
        link = open_link(url, protocol)
    except ValueError as exc:
        return [Result(t, _now(), error=str(exc)) for t in targets]
    try:
        for i, t in enumerate(targets):
            try:
                profile = profiles.get(t.profile)
                profile.check_protocol(protocol)
                async with bus_lock(url):
                    read_at = datetime.now(UTC)  # under the bus lock: orders it among read-backs of commands
                    values = await profile.read(link, t.address)
                results.append(Result(t, _now(), values=values, read_at=read_at))
            except GatewayDown as exc:
                # the gateway is gone: the rest of its meters fail the same way without waiting
                results.extend(Result(x, _now(), error=str(exc)) for x in targets[i:])
                break
            except (HardwareError, ValueError) as exc:
                results.append(Result(t, _now(), error=str(exc)))
    finally:
        await link.close()
        if total is not None:
            total.add(link.stats)
        observe("poll_gateway", gateway=url, meters=len(targets), failed=sum(r.error is not None for r in results),
                seconds=time.perf_counter() - started)
    return results


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


BULK_FROM = 200  # readings in a round from which billing gets them in one ingest_batch call


def store(results: list[Result]) -> RoundReport:
    """Write a round's results in one transaction. Readings go to ``core.billing.ingest`` one by
    one, or, in rounds of BULK_FROM readings or more, to ``core.billing.ingest_batch`` in one call
    (the same rules, far fewer queries; ``reading_billed`` is published for every accepted reading
    with ``signals.emit_many``: one job after commit for the round). If billing raises, the round is
    written again meter by meter with a
    savepoint each, so one bad meter spoils nothing else."""
    readings = sum(1 for r in results if r.values is not None and r.values.total is not None)
    try:
        return _store(results, isolate=False, bulk=readings >= BULK_FROM)
    except Exception:
        log.warning("a poll round failed to store in one go; storing meter by meter", exc_info=True)
        return _store(results, isolate=True, bulk=False)


def _store(results: list[Result], *, isolate: bool, bulk: bool) -> RoundReport:
    from contextlib import nullcontext

    from core import billing
    report = RoundReport(meters=len(results))
    pending: list = []  # (meter, Result) for the bulk call
    gateways_seen: dict[str, bool] = {}
    supply_seen: list = []  # (meter, read at) whose relay/valve this round changed and may disagree
    with session_scope() as s:
        # Locked in id order: a command's finish (hardware.executor) that confirms a newer relay state
        # waits for this round and then compares with what it wrote, instead of both writing blind.
        meters = {m.id: m for m in s.scalars(select(Meter).where(Meter.id.in_([r.target.meter_id for r in results]))
                                             .order_by(Meter.id).with_for_update()
                                             .execution_options(populate_existing=True))}
        remaining_before = {m.id: m.remaining_fen for m in meters.values()}
        for r in results:
            meter = meters.get(r.target.meter_id)
            if meter is None:
                continue
            ok = r.values is not None
            gateways_seen[r.target.url] = gateways_seen.get(r.target.url, False) or ok
            try:
                with s.begin_nested() if isolate else nullcontext():
                    if not ok:
                        record_failure(s, meter, r.error or "no reply", r.taken_at)
                        report.failed += 1
                        continue
                    applied = record_success(s, meter, r.values, r.taken_at, observed_at=r.read_at or r.taken_at)
                    if "supply" in applied and enforce.worth_checking(meter):
                        supply_seen.append((meter, r.read_at or r.taken_at))
                    report.ok += 1
                    total = r.values.total
                    if total is not None and bulk:
                        pending.append((meter, r))
                    elif total is not None:
                        res = billing.ingest(s, meter.id, r.taken_at, total, r.values.periods, source="poll")
                        report.billing[getattr(res, "status", "stored")] += 1
            except Exception:
                if not isolate:
                    raise
                log.exception("storing the reading of meter %s failed", r.target.meter_id)
                report.billing["error"] += 1
        if pending:
            _ingest_bulk(s, pending, report)
        if supply_seen:
            _enforce(s, supply_seen, isolate=isolate)
        _announce_remaining(s, meters, remaining_before)
        now = utcnow()
        for gw in s.scalars(select(Gateway).where(Gateway.url.in_(list(gateways_seen)))):
            gw.online = gateways_seen[gw.url]
            if gw.online:
                gw.last_seen_at = now
    return report


def _enforce(s, seen: list, *, isolate: bool) -> None:
    """Desired supply (core.supply.enforce) for the meters whose relay/valve this round read and that
    may disagree; on the isolate path each in a savepoint of its own."""
    if not isolate:
        enforce.check_many(s, seen)
        return
    for meter, at in seen:
        try:
            with s.begin_nested():
                enforce.check_many(s, [(meter, at)])
        except Exception:
            log.exception("desired-supply check of meter %s failed", meter.id)


def _announce_remaining(s, meters: dict[int, Meter], before: dict[int, int | None]) -> None:
    """A prepaid-meter account's balance is its meter's remaining amount: when a read changes it,
    publish ``balance_changed`` (entry kind ``meter_read``) so alarms look again (one job per round)."""
    from core import signals
    from core.models import Account
    changed = {m.account_id: m.remaining_fen - (before.get(m.id) or 0) for m in meters.values()
               if m.account_id is not None and m.remaining_fen is not None and m.remaining_fen != before.get(m.id)}
    if not changed:
        return
    meter_side = set(s.scalars(select(Account.id).where(Account.id.in_(list(changed)),
                                                        Account.billing_mode == "prepaid-meter")))
    signals.emit_many(s, "balance_changed", [
        {"account_id": aid, "entry_kind": "meter_read", "delta_fen": int(delta), "entry_id": None}
        for aid, delta in sorted(changed.items()) if aid in meter_side])


def _ingest_bulk(s, pending: list, report: RoundReport) -> None:
    from core import billing, signals
    rows = [billing.RawReading(meter.id, r.taken_at, r.values.total, r.values.periods, "poll") for meter, r in pending]
    batch = billing.ingest_batch(s, rows, actor="poller", front="job")
    billed = []
    for (meter, _r), res in zip(pending, batch.results):
        report.billing[res.status] += 1
        if res.status == "accepted" and not getattr(res, "late", False):
            billed.append({"meter_id": meter.id, "account_id": meter.account_id})
    # one job after commit for the round (the device-alarm listener has a set-based form), not a
    # dispatch per reading on the poll path: that was 80% of storing a 6,400-meter round
    signals.emit_many(s, "reading_billed", billed)
