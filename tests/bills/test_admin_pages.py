"""账单管理 pages: the list with confirm and export, the printable bill with desk payment and credit notes."""
from __future__ import annotations

import io
from datetime import date

from openpyxl import load_workbook
from sqlalchemy import func, select

from core.bills import generate
from core.models import Bill, JournalEntry, Site
from tests.admin.conftest import op_of
from tests.bills.conftest import item


def made(session, shop):
    item(session, shop)
    generate.generate_for_period(session, shop.site_id, "2026-04", preview=False, actor="t", front="cli")
    session.commit()
    return session.scalar(select(Bill))


def test_the_list_confirms_all_drafts_and_exports(manage, session, shop):
    bill = made(session, shop)
    site = session.get(Site, shop.site_id)
    manage.as_manager("alice", sites=[site])
    page = manage.client.get(f"/admin/sites/{site.id}/bills?period=2026-04")
    assert page.status_code == 200 and bill.bill_no in page.text and "确认本期全部草稿" in page.text
    assert "205.95" in page.text
    r = manage.post(f"/admin/sites/{site.id}/bills/confirm", {"period": "2026-04"})
    assert r.status_code == 303
    session.expire_all()
    assert session.get(Bill, bill.id).state == "confirmed"
    assert "已确认 1 张账单" in manage.client.get(r.headers["Location"]).text
    # twice: nothing more
    manage.post(f"/admin/sites/{site.id}/bills/confirm", {"period": "2026-04"})
    assert session.scalar(select(func.count()).select_from(JournalEntry).where(
        JournalEntry.idempotency_key.like("bill:%"))) == 1
    xlsx = manage.client.get(f"/admin/sites/{site.id}/bills.xlsx?period=2026-04")
    assert xlsx.status_code == 200
    assert [c.value for c in load_workbook(io.BytesIO(xlsx.data))["账单"][1]][0] == "账单号"
    arrears = manage.client.get(f"/admin/sites/{site.id}/bills.xlsx?period=2026-04&arrears=1")
    ws = load_workbook(io.BytesIO(arrears.data))["欠费清单"]
    assert ws.cell(row=2, column=1).value == bill.bill_no
    # English
    manage.client.get("/admin/lang/en")
    english = manage.client.get(f"/admin/sites/{site.id}/bills?period=2026-04").text
    assert "Owed (yuan)" in english and "未收（元）" not in english


def test_the_bill_page_prints_and_takes_desk_payments_once(manage, session, shop):
    bill = made(session, shop)
    site = session.get(Site, shop.site_id)
    manage.as_manager("alice", sites=[site])
    page = manage.client.get(f"/admin/bills/{bill.bill_no}")
    assert page.status_code == 200 and "window.print()" in page.text and "@media print" in page.text
    assert "电费（峰）" in page.text and "40.80" in page.text and "物业费" in page.text
    assert 'id="pay-form"' not in page.text  # a draft is not paid
    assert manage.post(f"/admin/bills/{bill.bill_no}/confirm").status_code == 303
    page = manage.client.get(f"/admin/bills/{bill.bill_no}").text
    op = op_of(page)
    for _ in range(2):  # the same form twice
        r = manage.post(f"/admin/bills/{bill.bill_no}/pay", {"amount": "100.00", "method": "cash", "op": op})
        assert r.status_code == 303
    session.expire_all()
    b = session.get(Bill, bill.id)
    assert (b.state, b.paid_fen, b.open_fen) == ("partly_paid", 10000, 10595)
    too_much = manage.post(f"/admin/bills/{bill.bill_no}/pay", {"amount": "105.96", "method": "transfer",
                                                                 "op": op_of(page).replace("a", "b")})
    assert too_much.status_code == 400
    credit = manage.post(f"/admin/bills/{bill.bill_no}/credit", {"line": "5", "amount": "5.95", "reason": "面积更正",
                                                                 "op": op_of(page)})
    assert credit.status_code == 303
    session.expire_all()
    b = session.get(Bill, bill.id)
    assert (b.credited_fen, b.open_fen) == (595, 10000)
    page = manage.client.get(f"/admin/bills/{bill.bill_no}").text
    assert "C" + str(site.id) + "-202604-00001" in page and 'id="payments"' in page
    # the same sheet as an A4 PDF: the lines, the total and what is still open, to the fen
    pdf = manage.client.get(f"/admin/bills/{bill.bill_no}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    from core.bills import pdf as bill_pdf
    from core.bills import service
    d = service.detail(session, bill.bill_no)
    raw = bill_pdf.bill_pdf(d, "partly_paid", printed=date(2026, 5, 3), compress=False)
    for text in (bill.bill_no, "40.80", "205.95", "100.00", "5.95"):
        assert f"({text})".encode() in raw or text.encode() in raw, text


def test_another_sites_bill_is_404_and_a_viewer_cannot_pay(manage, session, shop, factory):
    bill = made(session, shop)
    other = factory.site(name="Other")
    manage.as_manager("bob", sites=[other])
    assert manage.client.get(f"/admin/bills/{bill.bill_no}").status_code == 404
    assert manage.client.get(f"/admin/bills/{bill.bill_no}.pdf").status_code == 404
    assert manage.client.get(f"/admin/sites/{shop.site_id}/bills").status_code == 404
    assert manage.post(f"/admin/bills/{bill.bill_no}/confirm").status_code == 404
    manage.client.post("/admin/logout", data={"csrf_token": manage.csrf()})
    site = session.get(Site, shop.site_id)
    manage.as_manager("carol", sites=[site], role="viewer")
    assert manage.post(f"/admin/bills/{bill.bill_no}/confirm").status_code == 403
    session.expire_all()
    assert session.get(Bill, bill.id).state == "draft"


def test_the_list_opens_on_the_newest_month_with_bills(manage, session, shop):
    bill = made(session, shop)
    site = session.get(Site, shop.site_id)
    manage.as_manager("alice", sites=[site])
    page = manage.client.get(f"/admin/sites/{site.id}/bills").text
    assert 'value="2026-04"' in page and bill.bill_no in page
