"""月末结算 pages over the Garden site (tests/monthend/conftest.py): schemes, rules and the common-area
meter's plan, the preview (changes nothing) and the run, bad input, and who may do what."""
from __future__ import annotations

import json

from sqlalchemy import func, select

from core.models import JournalEntry, Meter, MonthItem
from tests.monthend.conftest import garden  # noqa: F401 - fixture

SCHEME = {"name": "物业费", "code": "property", "basis": "per_m2", "amount": "2.5", "every": "month", "day": 1,
          "mode": "deduct", "prorate": "days", "start": "2026-01-01", "scope": {"buildings": ["A"]}}
RULE = {"name": "公区电", "master": "EM-COMMON", "basis": "area", "accounts": ["101", "102", "103"],
        "mode": "deduct"}


def count(session, model, *where):
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_a_manager_adds_a_scheme_and_a_rule_previews_and_runs_the_month(manage, session, garden):  # noqa: F811
    manage.as_manager("op", sites=[garden.site])
    c, sid = manage.client, garden.site.id
    page = c.get(f"/admin/sites/{sid}/charges").text
    assert "收费方案" in page and "月末结算" in page and "还没有收费方案" in page
    r = manage.post(f"/admin/sites/{sid}/charges", {"spec": json.dumps(SCHEME)})
    assert r.status_code == 302
    assert "property" in c.get(f"/admin/sites/{sid}/charges").text
    bad = manage.post(f"/admin/sites/{sid}/charges", {"spec": json.dumps({**SCHEME, "code": "x y"})})
    assert bad.status_code == 400 and "code" in bad.text
    assert manage.post(f"/admin/sites/{sid}/charges", {"spec": "{nope"}).status_code == 400
    page = c.get(f"/admin/sites/{sid}/apportion").text
    assert "EM-COMMON" in page and "公区表" in page
    assert manage.post(f"/admin/sites/{sid}/apportion", {"spec": json.dumps(RULE)}).status_code == 302
    assert "公区电" in c.get(f"/admin/sites/{sid}/apportion").text

    preview = c.get(f"/admin/sites/{sid}/month-end?period=2026-04")
    assert preview.status_code == 200 and "125.63" in preview.text and "100.01" in preview.text  # apportioned total
    assert count(session, JournalEntry, JournalEntry.kind.in_(("charge", "apportionment"))) == 0
    assert count(session, MonthItem) == 0
    r = manage.post(f"/admin/sites/{sid}/month-end", {"period": "2026-04"})
    assert r.status_code == 302 and "period=2026-04" in r.headers["Location"]
    assert count(session, JournalEntry, JournalEntry.kind == "charge") == 4
    assert count(session, JournalEntry, JournalEntry.kind == "apportionment") == 3
    page = c.get(f"/admin/sites/{sid}/month-end?period=2026-04").text
    assert "已结算" in page and "charge:" in page
    manage.post(f"/admin/sites/{sid}/month-end", {"period": "2026-04"})  # again: nothing more
    assert count(session, JournalEntry, JournalEntry.kind.in_(("charge", "apportionment"))) == 7
    bad = c.get(f"/admin/sites/{sid}/month-end?period=2026-4x")
    assert bad.status_code == 400 and "YYYY-MM" in bad.text


def test_the_common_meters_plan_is_set_on_the_apportionment_page(manage, session, garden):  # noqa: F811
    manage.as_manager("op", sites=[garden.site])
    sid = garden.site.id
    r = manage.post(f"/admin/sites/{sid}/apportion/master", {"meter": "EM-COMMON", "tariff": ""})
    assert r.status_code == 302
    session.expire_all()
    assert session.get(Meter, garden.master.id).tariff_plan_id is None
    manage.post(f"/admin/sites/{sid}/apportion/master", {"meter": "EM-COMMON", "tariff": "电"})
    session.expire_all()
    assert session.get(Meter, garden.master.id).tariff_plan_id is not None
    r = manage.post(f"/admin/sites/{sid}/apportion/master", {"meter": "EM-COMMON", "tariff": "水"})
    assert r.status_code == 400  # a water plan never prices an electricity meter


def test_viewers_read_but_may_not_change_and_strangers_get_404(manage, session, factory, garden):  # noqa: F811
    manage.as_manager("eye", sites=[garden.site], role="viewer")
    c, sid = manage.client, garden.site.id
    assert c.get(f"/admin/sites/{sid}/month-end?period=2026-04").status_code == 200
    assert "run-form" not in c.get(f"/admin/sites/{sid}/month-end?period=2026-04").text
    assert manage.post(f"/admin/sites/{sid}/month-end", {"period": "2026-04"}).status_code == 403
    assert manage.post(f"/admin/sites/{sid}/charges", {"spec": json.dumps(SCHEME)}).status_code == 403
    other = factory.site("Elsewhere")
    session.commit()
    assert c.get(f"/admin/sites/{other.id}/charges").status_code == 404
    assert c.get(f"/admin/sites/{other.id}/month-end").status_code == 404
