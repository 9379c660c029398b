"""Pricers for accounts: the plan's dated versions in the site's timezone, loaded once per batch."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import TariffVersion
from core.tariffs import Pricer, Version, parse_plan
from core.tariffs.zones import zone


class PricerCache:
    """One ``Pricer`` per (plan, timezone), built from the stored versions on first use."""

    def __init__(self, session: Session):
        self.session = session
        self._versions: dict[int, list[Version]] = {}
        self._pricers: dict[tuple[int, str], Pricer] = {}

    def preload(self, plan_ids) -> None:
        wanted = [p for p in set(plan_ids) if p is not None and p not in self._versions]
        if not wanted:
            return
        rows = self.session.execute(select(TariffVersion.plan_id, TariffVersion.effective_from, TariffVersion.spec)
                                    .where(TariffVersion.plan_id.in_(wanted))
                                    .order_by(TariffVersion.plan_id, TariffVersion.effective_from))
        for pid in wanted:
            self._versions[pid] = []
        for pid, eff, spec in rows:
            self._versions[pid].append(Version(eff, parse_plan(spec)))

    def loaded(self, plan_id: int | None, tz: str, unit: str | None = None) -> Pricer | None:
        """``get`` for a plan ``preload`` has read: never touches the database (billing prices while
        the same connection writes readings). With ``unit``: None unless the plan is priced in it
        (a kWh plan never prices a water meter, even one set by hand in the database)."""
        if plan_id is not None and plan_id not in self._versions:
            raise LookupError(f"tariff plan {plan_id} was not preloaded")
        pricer = self.get(plan_id, tz)
        if pricer is not None and unit is not None and pricer.unit != unit:
            return None
        return pricer

    def get(self, plan_id: int | None, tz: str) -> Pricer | None:
        """The pricer for a plan, or None when there is no plan or it has no version."""
        if plan_id is None:
            return None
        key = (plan_id, tz)
        if key not in self._pricers:
            self.preload([plan_id])
            versions = self._versions[plan_id]
            if not versions:
                return None
            self._pricers[key] = Pricer(versions, zone(tz))
        return self._pricers[key]
