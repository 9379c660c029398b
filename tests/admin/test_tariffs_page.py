"""Tariff pages: list, create, new dated version, bad plans refused, and the preview quote."""
from __future__ import annotations

import json

from sqlalchemy import func, select

from core.models import TariffPlan, TariffVersion

BEIJING = {"kind": "tiered", "unit": "kWh", "cycle": "month",
           "tiers": [{"upto": "240", "price": "0.4883"}, {"upto": "400", "price": "0.5383"},
                     {"upto": None, "price": "0.7883"}]}


def test_an_admin_creates_a_plan_and_sees_it_listed(manage, session):
    manage.as_manager("root", all_sites=True, role="admin")
    resp = manage.post("/admin/tariffs", {"name": "北京居民", "effective_from": "2026-01-01",
                                          "spec": json.dumps(BEIJING)})
    assert resp.status_code == 303
    html = manage.client.get("/admin/tariffs").text
    assert "北京居民" in html and "阶梯" in html and "2026-01-01" in html


def test_a_new_version_keeps_the_old_one(manage, session):
    manage.as_manager("root", all_sites=True, role="admin")
    manage.post("/admin/tariffs", {"name": "商业电价", "effective_from": "2026-01-01",
                                   "spec": json.dumps({"kind": "flat", "unit": "kWh", "price": "1.0"})})
    editor = manage.client.get("/admin/tariffs/new?name=商业电价").text
    assert "&#34;price&#34;: &#34;1.0&#34;" in editor or '"price": "1.0"' in editor
    manage.post("/admin/tariffs", {"name": "商业电价", "effective_from": "2026-07-01",
                                   "spec": json.dumps({"kind": "flat", "unit": "kWh", "price": "1.1"})})
    assert session.scalar(select(func.count()).select_from(TariffVersion)) == 2


def test_a_bad_plan_is_refused_with_the_reason_and_saves_nothing(manage, session):
    manage.as_manager("root", all_sites=True, role="admin")
    for spec, reason in [("{not json", "JSON"), (json.dumps({"kind": "flat", "unit": "kWh", "price": "-1"}), "price"),
                         (json.dumps({"kind": "magic", "unit": "kWh"}), "kind")]:
        resp = manage.post("/admin/tariffs", {"name": "坏方案", "effective_from": "2026-01-01", "spec": spec})
        assert resp.status_code == 400 and reason in resp.text
    resp = manage.post("/admin/tariffs", {"name": "坏方案", "effective_from": "yesterday",
                                          "spec": json.dumps({"kind": "flat", "unit": "kWh", "price": "1"})})
    assert resp.status_code == 400
    assert session.scalar(select(func.count()).select_from(TariffPlan)) == 0


def test_only_admins_edit_tariffs(manage, factory):
    site = factory.site("东方广场")
    manage.as_manager("alice", sites=[site], role="operator")
    assert manage.client.get("/admin/tariffs").status_code == 200
    assert manage.client.get("/admin/tariffs/new").status_code == 403
    resp = manage.post("/admin/tariffs", {"name": "x", "effective_from": "2026-01-01",
                                          "spec": json.dumps({"kind": "flat", "unit": "kWh", "price": "1"})})
    assert resp.status_code == 403


def test_the_preview_quotes_500_kwh_on_beijing_tiers_at_282_15(manage):
    manage.as_manager("root", all_sites=True, role="admin")
    resp = manage.post("/admin/tariffs/preview", {"spec": json.dumps(BEIJING), "start": "2026-03-01",
                                                  "end": "2026-03-31", "usage": "500"})
    assert resp.status_code == 200
    assert resp.get_json()["total"] == "282.15"
    fragment = manage.post("/admin/tariffs/preview", {"spec": json.dumps(BEIJING), "start": "2026-03-01",
                                                      "end": "2026-03-31", "usage": "500"},
                           headers={"HX-Request": "true"})
    assert "¥282.15" in fragment.text and 'id="quote-lines"' in fragment.text


def test_a_preview_with_bad_usage_says_why(manage):
    manage.as_manager("root", all_sites=True, role="admin")
    resp = manage.post("/admin/tariffs/preview", {"spec": json.dumps(BEIJING), "start": "2026-03-01",
                                                  "end": "2026-02-01", "usage": "500"})
    assert resp.status_code == 400 and "结束日期" in resp.get_json()["message"]
    resp = manage.post("/admin/tariffs/preview", {"spec": json.dumps(BEIJING), "start": "2026-03-01",
                                                  "end": "2026-03-31", "usage": "lots"},
                       headers={"HX-Request": "true"})
    assert resp.status_code == 200 and 'class="flash err"' in resp.text


def test_the_preview_needs_the_csrf_token(manage):
    manage.as_manager("root", all_sites=True, role="admin")
    resp = manage.client.post("/admin/tariffs/preview", data={"spec": json.dumps(BEIJING)})
    assert resp.status_code == 400


def test_a_water_plan_reads_as_a_water_price(manage, session):
    from core.tariffs.store import add_plan
    add_plan(session, "商业水价", {"kind": "flat", "unit": "m3", "price": "5.0"})
    add_plan(session, "商业电价", {"kind": "flat", "unit": "kWh", "price": "1.0"})
    session.commit()
    manage.as_manager("root", all_sites=True, role="admin")
    html = manage.client.get("/admin/tariffs").text
    water = html[html.index("商业水价"):].split("</tr>", 1)[0]
    power = html[html.index("商业电价"):].split("</tr>", 1)[0]
    assert "单一水价" in water and "单一电价" not in water
    assert "单一电价" in power
    manage.client.get("/admin/lang/en")
    html = manage.client.get("/admin/tariffs").text
    assert "flat (water)" in html[html.index("商业水价"):].split("</tr>", 1)[0]


FLAT = {"kind": "flat", "unit": "kWh", "price": "1.0"}


def test_a_site_admin_cannot_change_another_sites_plan(manage, factory, session):
    from core.tariffs.store import add_plan
    own, other = factory.site("东方广场"), factory.site("西城大厦")
    theirs, _ = add_plan(session, "商业电价", FLAT, site_id=other.id)
    template, _ = add_plan(session, "居民电价", FLAT)
    session.commit()
    manage.as_manager("alice", sites=[own], role="admin")
    dearer = json.dumps({**FLAT, "price": "2.0"})
    resp = manage.post("/admin/tariffs", {"site_id": str(other.id), "name": "商业电价",
                                          "effective_from": "2027-01-01", "spec": dearer})
    assert resp.status_code == 404  # another site's plans are not even visible
    assert manage.client.get(f"/admin/tariffs/new?site_id={other.id}&name=商业电价").status_code == 404
    resp = manage.post("/admin/tariffs", {"site_id": "", "name": "居民电价", "effective_from": "2027-01-01",
                                          "spec": dearer})
    assert resp.status_code == 403  # a template: all-sites admins only
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(TariffVersion)) == 2
    html = manage.client.get("/admin/tariffs").text
    assert "居民电价" in html and "西城大厦" not in html
    # Its own site's plan it may write, and a template it may copy into its site.
    resp = manage.post("/admin/tariffs", {"site_id": str(own.id), "name": "商业电价", "effective_from": "2026-01-01",
                                          "spec": dearer})
    assert resp.status_code == 303
    assert manage.post(f"/admin/tariffs/{template.id}/copy", {"site_id": str(own.id)}).status_code == 303
    assert manage.post(f"/admin/tariffs/{template.id}/copy", {"site_id": str(other.id)}).status_code == 404
    session.expire_all()
    mine = {p.name for p in session.scalars(select(TariffPlan).where(TariffPlan.site_id == own.id))}
    assert mine == {"商业电价", "居民电价"}
    assert [v.spec["price"] for v in theirs.versions] == ["1.0"]
