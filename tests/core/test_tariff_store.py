"""Storing tariff plans never rewrites prices already in force."""
from datetime import date

import pytest

from core.errors import Conflict
from core.tariffs.store import EPOCH, add_plan, versions

FLAT = {"kind": "flat", "unit": "kWh", "price": "0.6"}
DEARER = {"kind": "flat", "unit": "kWh", "price": "0.7"}
TODAY = date(2026, 11, 27)


def test_a_new_plan_applies_from_the_start_and_the_same_spec_is_unchanged(session):
    plan, changed = add_plan(session, "p", FLAT, today=TODAY)
    assert changed and [v.effective_from for v in versions(session, plan.id)] == [EPOCH]
    assert add_plan(session, "p", FLAT, today=TODAY) == (plan, False)


def test_a_changed_plan_without_a_date_starts_today_and_keeps_history(session):
    plan, _ = add_plan(session, "p", FLAT, today=TODAY)
    _, changed = add_plan(session, "p", DEARER, today=TODAY)
    assert changed
    assert [(v.effective_from, v.spec["price"]) for v in versions(session, plan.id)] == [(EPOCH, "0.6"), (TODAY, "0.7")]


def test_a_version_in_force_is_never_rewritten(session):
    add_plan(session, "p", FLAT, effective_from=date(2026, 1, 1), today=TODAY)
    with pytest.raises(Conflict, match="already in force"):
        add_plan(session, "p", DEARER, effective_from=date(2026, 1, 1), today=TODAY)


def test_a_future_version_may_be_corrected_before_it_starts(session):
    plan, _ = add_plan(session, "p", FLAT, today=TODAY)
    add_plan(session, "p", DEARER, effective_from=date(2027, 1, 1), today=TODAY)
    _, changed = add_plan(session, "p", {**DEARER, "price": "0.75"}, effective_from=date(2027, 1, 1), today=TODAY)
    assert changed and versions(session, plan.id)[-1].spec["price"] == "0.75"
