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


def test_two_sites_keep_plans_of_the_same_name_apart(session, factory):
    north, south = factory.site("北区"), factory.site("南区")
    a, _ = add_plan(session, "商业电价", FLAT, site_id=north.id, today=TODAY)
    b, changed = add_plan(session, "商业电价", DEARER, site_id=south.id, today=TODAY)
    assert changed and a.id != b.id  # before: the second add was a new version of the first
    assert [v.spec["price"] for v in versions(session, a.id)] == ["0.6"]
    assert [v.spec["price"] for v in versions(session, b.id)] == ["0.7"]


def test_using_a_template_copies_it_and_template_edits_do_not_reach_the_copy(session, factory):
    from core.models import AuditLog
    from core.tariffs.store import plan_for
    site = factory.site()
    template, _ = add_plan(session, "居民电价", FLAT, today=TODAY)
    add_plan(session, "居民电价", DEARER, effective_from=date(2027, 1, 1), today=TODAY)
    copy = plan_for(session, "居民电价", site_id=site.id, utility="electricity")
    assert (copy.site_id, copy.name) == (site.id, "居民电价") and copy.id != template.id
    assert [(v.effective_from, v.spec) for v in versions(session, copy.id)] == \
        [(v.effective_from, v.spec) for v in versions(session, template.id)]
    assert plan_for(session, "居民电价", site_id=site.id, utility="electricity").id == copy.id  # copied once
    assert session.query(AuditLog).filter_by(action="copy_tariff_template").count() == 1
    add_plan(session, "居民电价", {**FLAT, "price": "9.9"}, effective_from=date(2027, 6, 1), today=TODAY)
    assert [v.spec["price"] for v in versions(session, copy.id)] == ["0.6", "0.7"]


def test_a_manager_edits_only_plans_of_own_sites(session, factory):
    from core.errors import Forbidden
    from core.sites.managers import create_manager
    own, other = factory.site("自己的"), factory.site("别人的")
    boss = create_manager(session, "boss", "password1", all_sites=True, role="admin")
    admin = create_manager(session, "alice", "password1", sites=[own.name], role="admin")
    operator = create_manager(session, "olga", "password1", sites=[own.name], role="operator")
    plan, changed = add_plan(session, "p", FLAT, site_id=own.id, manager_id=admin.id, today=TODAY)
    assert changed and plan.site_id == own.id
    for site_id, manager in ((other.id, admin), (None, admin), (own.id, operator)):
        with pytest.raises(Forbidden):
            add_plan(session, "p", DEARER, site_id=site_id, manager_id=manager.id, today=TODAY)
    assert [v.spec["price"] for v in versions(session, plan.id)] == ["0.6"]
    add_plan(session, "p", DEARER, site_id=other.id, manager_id=boss.id, today=TODAY)
    add_plan(session, "t", FLAT, manager_id=boss.id, today=TODAY)  # a template: all-sites admins only
