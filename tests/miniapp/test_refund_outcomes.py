"""A refund's outcome has three values -- done, refused, unknown -- and unknown is never taken for refused.

Each provider answer the sandbox can give (system errors before and after applying, a timeout, Alipay's
fund_change N, WeChat's PROCESSING, ABNORMAL and CLOSED, 429) ends where the provider says it is, and only
a definitive refusal gives the wallet its money back. Issue 17, item 3.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select

from tests.miniapp.conftest import balance_of, order_row, wait_for
from tests.miniapp.test_refunds_and_reconciliation import paid_order, refund, refund_row


def reversals(refund_no: str) -> int:
    from core.db import new_session
    from core.models import JournalEntry
    r = refund_row(refund_no)
    with new_session() as s:
        return s.scalar(select(func.count()).select_from(JournalEntry).where(JournalEntry.reverses_id == r.entry_id))


def refund_calls(api: str = "alipay.trade.refund") -> list[dict]:
    from miniapp_api import sandbox
    return [c for c in sandbox.CALLS if c["api"] == api]


def ledger_problems() -> list[str]:
    from core.db import new_session
    from core.ledger.check import validate
    from core.payments import checks
    with new_session() as s:
        return [str(p) for p in validate(s) + checks.validate(s)]


def settle_open_refunds() -> dict:
    from miniapp_api.jobs import query_pending
    return query_pending(older_than_seconds=0)


@pytest.fixture
def paid(bound_tenant, pay_env):
    """A tenant with 10.00 who paid 50.00 through ``channel``: (account, order no); the wallet holds 60.00."""
    def make(channel: str):
        tenant, account = bound_tenant()
        order_no = paid_order(tenant, account, channel)
        assert balance_of(account.id) == 6000
        return account, order_no
    return make


# --- Alipay -----------------------------------------------------------------------------

def test_alipay_system_error_after_applying_is_unknown_then_the_query_settles_it(paid):
    from miniapp_api import sandbox
    account, order_no = paid("alipay")
    sandbox.inject("alipay.trade.refund", "system_error_after")
    refund_no = refund(order_no, 2000)
    r = refund_row(refund_no)
    assert r.state == "unknown" and r.attempts == 1 and "20000" in r.last_error
    assert balance_of(account.id) == 4000 and reversals(refund_no) == 0  # not taken for a refusal
    assert order_row(order_no).state == "refunding"
    assert settle_open_refunds() == {"refund-succeeded": 1}
    assert refund_row(refund_no).state == "succeeded"
    assert list(sandbox.ALI_REFUNDS) == [refund_no] and len(refund_calls()) == 1
    assert balance_of(account.id) == 4000 and order_row(order_no).state == "paid"
    assert ledger_problems() == []


def test_alipay_system_error_before_applying_is_sent_again_with_the_same_request_no(paid):
    from miniapp_api import sandbox
    account, order_no = paid("alipay")
    sandbox.inject("alipay.trade.refund", "system_error")
    refund_no = refund(order_no, 2000)
    assert refund_row(refund_no).state == "unknown" and sandbox.ALI_REFUNDS == {}
    settle_open_refunds()  # the query finds nothing: sent again, same out_request_no
    assert [c["refund_no"] for c in refund_calls()] == [refund_no, refund_no]
    assert refund_row(refund_no).state == "succeeded"
    assert sandbox.ALI_ORDERS[order_no]["refunded"] == 2000 and len(sandbox.ALI_REFUNDS) == 1
    assert balance_of(account.id) == 4000 and reversals(refund_no) == 0


def test_alipay_fund_change_n_is_queried_not_failed(paid):
    from miniapp_api import sandbox
    account, order_no = paid("alipay")
    sandbox.inject("alipay.trade.refund", "fund_change_n")
    refund_no = refund(order_no, 2000)
    assert refund_row(refund_no).state == "succeeded"  # the query at once said REFUND_SUCCESS
    assert [c["api"] for c in sandbox.CALLS if "refund" in c["api"]] == [
        "alipay.trade.refund", "alipay.trade.fastpay.refund.query"]
    assert balance_of(account.id) == 4000 and reversals(refund_no) == 0


def test_alipay_fund_change_n_the_query_cannot_confirm_stays_unknown(paid):
    from miniapp_api import sandbox
    account, order_no = paid("alipay")
    sandbox.inject("alipay.trade.refund", "fund_change_n")
    sandbox.inject("alipay.trade.fastpay.refund.query", "no_data")
    refund_no = refund(order_no, 2000)
    assert refund_row(refund_no).state == "unknown" and reversals(refund_no) == 0
    settle_open_refunds()
    assert refund_row(refund_no).state == "succeeded" and len(sandbox.ALI_REFUNDS) == 1
    assert balance_of(account.id) == 4000


def test_a_second_refund_under_the_same_request_no_is_fund_change_n(paid):
    """The sandbox answers as Alipay does: the same out_request_no again moves no money (it said Y before)."""
    from miniapp_api import sandbox
    from miniapp_api.jobs import send_refund
    account, order_no = paid("alipay")
    refund_no = refund(order_no, 2000)
    assert refund_row(refund_no).state == "succeeded"
    from core.db import session_scope
    from core.models import PaymentRefund
    with session_scope() as s:  # as if the first answer had been lost
        s.scalar(select(PaymentRefund).where(PaymentRefund.refund_no == refund_no)).state = "unknown"
    assert send_refund(refund_no) == "succeeded"
    answers = [c for c in refund_calls()]
    assert len(answers) == 2 and sandbox.ALI_ORDERS[order_no]["refunded"] == 2000


def test_alipay_timeout_is_unknown_then_the_query_settles_it(paid, monkeypatch):
    from miniapp_api import sandbox
    account, order_no = paid("alipay")
    monkeypatch.setenv("METERPAY_PAY_TIMEOUT", "0.5")
    monkeypatch.setattr(sandbox, "TIMEOUT_DELAY", 1.5)
    sandbox.inject("alipay.trade.refund", "timeout")
    refund_no = refund(order_no, 2000)
    r = refund_row(refund_no)
    assert r.state == "unknown" and "Timeout" in r.last_error and reversals(refund_no) == 0
    settle_open_refunds()
    assert refund_row(refund_no).state == "succeeded" and len(refund_calls()) == 1


def test_alipay_http_502_is_unknown_and_sent_again(paid):
    from miniapp_api import sandbox
    account, order_no = paid("alipay")
    sandbox.inject("alipay.trade.refund", "http_502")
    refund_no = refund(order_no, 2000)
    assert refund_row(refund_no).state == "unknown"
    settle_open_refunds()
    assert refund_row(refund_no).state == "succeeded" and len(refund_calls()) == 2
    assert balance_of(account.id) == 4000


def test_an_alipay_refusal_is_failed_and_reversed(paid):
    from miniapp_api import sandbox
    account, order_no = paid("alipay")
    sandbox.inject("alipay.trade.refund", "refused")
    refund_no = refund(order_no, 2000)
    r = refund_row(refund_no)
    assert r.state == "failed" and r.provider_data["last_report"]["sub_code"] == "ACQ.TRADE_STATUS_ERROR"
    assert balance_of(account.id) == 6000 and reversals(refund_no) == 1
    assert order_row(order_no).state == "paid" and order_row(order_no).refunded_fen == 0
    assert ledger_problems() == []


def test_a_refusal_of_a_resend_is_checked_with_a_query_before_anything_is_reversed(paid):
    """Sent, applied, but the answer was 20000; the query cannot see it yet, so it is sent again and that send
    is refused: the refund is asked about once more (it did go through) instead of being re-credited."""
    from miniapp_api import sandbox
    account, order_no = paid("alipay")
    sandbox.inject("alipay.trade.refund", "system_error_after", "refused")
    sandbox.inject("alipay.trade.fastpay.refund.query", "no_data")
    refund_no = refund(order_no, 2000)
    assert refund_row(refund_no).state == "unknown"
    settle_open_refunds()
    assert refund_row(refund_no).state == "succeeded" and reversals(refund_no) == 0
    assert balance_of(account.id) == 4000 and ledger_problems() == []


# --- WeChat Pay -------------------------------------------------------------------------

def test_wechat_5xx_on_refund_is_unknown_and_the_query_settles_it(paid):
    from miniapp_api import sandbox
    account, order_no = paid("wechat")
    sandbox.inject("wechat.refund", "http_500_after")
    refund_no = refund(order_no, 2000)
    r = refund_row(refund_no)
    assert r.state == "unknown" and r.attempts == 1 and "SYSTEM_ERROR" in r.last_error
    assert balance_of(account.id) == 4000 and reversals(refund_no) == 0
    settle_open_refunds()
    assert refund_row(refund_no).state == "succeeded" and len(refund_calls("wechat.refund")) == 1
    assert sandbox.WX_ORDERS[order_no]["refunded"] == 2000 and balance_of(account.id) == 4000
    assert ledger_problems() == []


def test_wechat_5xx_before_applying_is_sent_again_with_the_same_refund_no(paid):
    from miniapp_api import sandbox
    account, order_no = paid("wechat")
    sandbox.inject("wechat.refund", "http_500")
    refund_no = refund(order_no, 2000)
    assert refund_row(refund_no).state == "unknown" and sandbox.WX_REFUNDS == {}
    settle_open_refunds()  # 404 from the query: sent again
    assert [c["refund_no"] for c in refund_calls("wechat.refund")] == [refund_no, refund_no]
    assert wait_for(lambda: refund_row(refund_no).state == "succeeded")
    assert sandbox.WX_ORDERS[order_no]["refunded"] == 2000 and balance_of(account.id) == 4000


def test_wechat_429_is_unknown_and_sent_again(paid):
    from miniapp_api import sandbox
    account, order_no = paid("wechat")
    sandbox.inject("wechat.refund", "frequency_limited")
    refund_no = refund(order_no, 2000)
    assert refund_row(refund_no).state == "unknown"
    settle_open_refunds()
    assert wait_for(lambda: refund_row(refund_no).state == "succeeded")
    assert reversals(refund_no) == 0 and balance_of(account.id) == 4000


def test_wechat_timeout_is_unknown_and_the_query_settles_it(paid, monkeypatch):
    from miniapp_api import sandbox
    account, order_no = paid("wechat")
    monkeypatch.setenv("METERPAY_PAY_TIMEOUT", "0.5")
    monkeypatch.setattr(sandbox, "TIMEOUT_DELAY", 1.5)
    sandbox.inject("wechat.refund", "timeout")
    refund_no = refund(order_no, 2000)
    assert refund_row(refund_no).state == "unknown" and reversals(refund_no) == 0
    settle_open_refunds()
    assert refund_row(refund_no).state == "succeeded" and len(refund_calls("wechat.refund")) == 1


def test_wechat_processing_then_success(paid):
    from miniapp_api import sandbox
    account, order_no = paid("wechat")
    sandbox.inject("wechat.refund", "processing")
    refund_no = refund(order_no, 2000)
    assert refund_row(refund_no).state == "pending"
    assert settle_open_refunds() == {"refund-pending": 1}
    assert settle_open_refunds() == {"refund-succeeded": 1}
    assert refund_row(refund_no).state == "succeeded" and balance_of(account.id) == 4000


def test_wechat_refund_query_errors_keep_it_unknown(paid):
    from miniapp_api import sandbox
    account, order_no = paid("wechat")
    sandbox.inject("wechat.refund", "http_500_after")
    sandbox.inject("wechat.refund_query", "http_500")
    refund_no = refund(order_no, 2000)
    settle_open_refunds()
    r = refund_row(refund_no)
    assert r.state == "unknown" and r.attempts == 2 and reversals(refund_no) == 0
    settle_open_refunds()
    assert refund_row(refund_no).state == "succeeded"


def test_wechat_closed_is_failed_and_reversed_once(paid, pay_env):
    from miniapp_api import sandbox
    account, order_no = paid("wechat")
    sandbox.inject("wechat.refund", "closed")
    refund_no = refund(order_no, 2000)  # the REFUND.CLOSED notification arrives too
    assert wait_for(lambda: any(n["kind"] == "wechat-refund" for n in sandbox.SENT))
    assert refund_row(refund_no).state == "failed" and reversals(refund_no) == 1
    assert balance_of(account.id) == 6000 and order_row(order_no).refunded_fen == 0
    assert ledger_problems() == []


def test_wechat_abnormal_waits_for_a_manager(paid):
    from core.db import session_scope
    from core.errors import Conflict
    from core.payments import orders as payments
    from miniapp_api import sandbox
    account, order_no = paid("wechat")
    sandbox.inject("wechat.refund", "abnormal")
    refund_no = refund(order_no, 2000)
    assert wait_for(lambda: any(n["kind"] == "wechat-refund" for n in sandbox.SENT))  # REFUND.ABNORMAL too
    assert refund_row(refund_no).state == "abnormal"
    assert balance_of(account.id) == 4000 and reversals(refund_no) == 0
    assert order_row(order_no).state == "refunding"
    settle_open_refunds()  # queried, never sent again, never re-credited by itself
    assert refund_row(refund_no).state == "abnormal" and len(refund_calls("wechat.refund")) == 1
    assert audit_actions(account.id).count("refund_abnormal") == 1

    with session_scope() as s:
        payments.resolve_abnormal_refund(s, refund_no, "recredit", actor="manager:li", note="bank card closed")
    assert refund_row(refund_no).state == "failed" and reversals(refund_no) == 1
    assert balance_of(account.id) == 6000 and order_row(order_no).state == "paid"
    with pytest.raises(Conflict), session_scope() as s:
        payments.resolve_abnormal_refund(s, refund_no, "recredit", actor="manager:li")
    assert balance_of(account.id) == 6000 and "refund_abnormal_resolved" in audit_actions(account.id)

    # another abnormal refund, settled by the merchant in WeChat's platform: the callback says SUCCESS
    sandbox.inject("wechat.refund", "abnormal")
    second = refund(order_no, 1000)
    assert wait_for(lambda: refund_row(second).state == "abnormal")
    assert sandbox.wx_settle_abnormal(second, "SUCCESS") == 204
    assert refund_row(second).state == "succeeded" and reversals(second) == 0
    assert balance_of(account.id) == 5000 and ledger_problems() == []


def test_a_manager_resolves_an_abnormal_refund_from_the_command_line(paid):
    from meterpay.cli.base import cli
    from miniapp_api import sandbox
    account, order_no = paid("wechat")
    sandbox.inject("wechat.refund", "abnormal")
    refund_no = refund(order_no, 2000)
    assert wait_for(lambda: refund_row(refund_no).state == "abnormal")
    listed = CliRunner().invoke(cli, ["pay", "refunds", "--state", "abnormal"])
    assert listed.exit_code == 0 and refund_no in listed.output
    result = CliRunner().invoke(cli, ["pay", "resolve-refund", refund_no, "--outcome", "refunded-elsewhere",
                                      "--actor", "manager:li", "--note", "paid by bank transfer"])
    assert result.exit_code == 0, result.output
    assert '"state": "succeeded"' in result.output
    assert refund_row(refund_no).state == "succeeded" and balance_of(account.id) == 4000
    again = CliRunner().invoke(cli, ["pay", "resolve-refund", refund_no, "--outcome", "recredit",
                                     "--actor", "manager:li"])
    assert again.exit_code != 0 and "only an abnormal refund" in again.stderr
    assert balance_of(account.id) == 4000


def audit_actions(account_id: int) -> list[str]:
    from core.db import new_session
    from core.models import AuditLog
    with new_session() as s:
        return list(s.scalars(select(AuditLog.action).where(AuditLog.account_id == account_id)
                              .order_by(AuditLog.id)))


def test_a_refund_unknown_for_too_long_is_audited_once_and_never_reversed(paid):
    from core.db import session_scope
    from core.models import PaymentRefund
    from core.utils import utcnow
    from miniapp_api import sandbox
    account, order_no = paid("alipay")
    sandbox.inject("alipay.trade.refund", "system_error")
    refund_no = refund(order_no, 2000)
    with session_scope() as s:
        s.scalar(select(PaymentRefund).where(PaymentRefund.refund_no == refund_no)).created_at = \
            utcnow() - timedelta(hours=25)
    sandbox.inject("alipay.trade.fastpay.refund.query", "system_error", "system_error")
    settle_open_refunds()
    settle_open_refunds()
    assert refund_row(refund_no).state == "unknown" and refund_row(refund_no).attempts == 3
    assert audit_actions(account.id).count("refund_stuck") == 1
    assert reversals(refund_no) == 0 and balance_of(account.id) == 4000


# --- typed errors, the ledger check, the sandbox's controls -------------------------------

def test_provider_errors_are_typed(paid, pay_env, monkeypatch):
    from core.payments.provider import ProviderError, get_provider
    from miniapp_api import sandbox
    account, order_no = paid("wechat")
    order = order_row(order_no)

    class Ask:  # what a refund row looks like to the provider
        refund_no, amount_fen, reason = "RFTYPED0001", 100, ""

    wechat = get_provider("wechat")
    sandbox.WX_ORDERS[order_no]["state"] = "CLOSED"
    with pytest.raises(ProviderError) as bad:
        wechat.refund(order, Ask)
    assert (bad.value.status, bad.value.code, bad.value.retryable) == (400, "INVALID_REQUEST", False)
    sandbox.WX_ORDERS[order_no]["state"] = "REFUND"
    sandbox.inject("wechat.refund", "http_500", "frequency_limited")
    for status, code in ((500, "SYSTEM_ERROR"), (429, "FREQUENCY_LIMITED")):
        with pytest.raises(ProviderError) as err:
            wechat.refund(order, Ask)
        assert (err.value.status, err.value.code, err.value.retryable) == (status, code, True)
    sandbox.inject("wechat.refund_query", "http_500")
    with pytest.raises(ProviderError) as err:
        wechat.query_refund(order, Ask)
    assert (err.value.status, err.value.retryable) == (500, True)
    assert wechat.query_refund(order, Ask) is None  # 404: never received

    import socket
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("METERPAY_WXPAY_API_BASE", f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderError) as err:
        get_provider("wechat").refund(order, Ask)
    assert (err.value.status, err.value.retryable) == (None, True)

    monkeypatch.setenv("METERPAY_ALIPAY_GATEWAY", f"{pay_env['fake']}/gateway.do")
    alipay = get_provider("alipay")
    sandbox.inject("alipay.trade.refund", "http_502")
    with pytest.raises(ProviderError) as err:
        alipay.refund(order, Ask)
    assert (err.value.status, err.value.retryable) == (502, True)
    sandbox.inject("alipay.trade.fastpay.refund.query", "system_error")
    with pytest.raises(ProviderError) as err:
        alipay.query_refund(order, Ask)
    assert (err.value.code, err.value.retryable) == ("ACQ.SYSTEM_ERROR", True)


def test_ledger_check_sees_a_refund_reversed_while_unknown(paid):
    from core.db import session_scope
    from core.ledger import cashdesk
    from core.models import PaymentRefund
    from meterpay.cli.base import cli
    from miniapp_api import sandbox
    account, order_no = paid("alipay")
    sandbox.inject("alipay.trade.refund", "system_error_after")
    refund_no = refund(order_no, 2000)
    assert refund_row(refund_no).state == "unknown" and ledger_problems() == []
    with session_scope() as s:  # what the old code did: a 20000 taken for a refusal
        cashdesk.reverse_entry(s, refund_row(refund_no).entry_id, actor="test")
    problems = ledger_problems()
    assert len(problems) == 1 and refund_no in problems[0] and "unknown" in problems[0]
    result = CliRunner().invoke(cli, ["ledger", "check", "--json"])
    assert result.exit_code == 1 and refund_no in result.output and "refund-reversal" in result.output

    other = refund(order_no, 1000)  # succeeded, then forced to failed without its reversal
    # the sandbox also posts Alipay's refund notification from a thread: let its handler finish first,
    # or on SQLite (no row locks) its "succeeded" can land after the forced "failed" below
    assert wait_for(lambda: any(n["kind"] == "alipay-refund" for n in sandbox.SENT), timeout=15)
    with session_scope() as s:
        s.scalar(select(PaymentRefund).where(PaymentRefund.refund_no == other)).state = "failed"
    assert any(other in p and "never reversed" in p for p in ledger_problems())


def test_the_sandbox_takes_faults_over_http_and_refuses_unknown_ones(pay_env):
    base = pay_env["fake"]
    ok = requests.post(f"{base}/_sandbox/faults", json={"api": "wechat.refund", "faults": ["abnormal"]}, timeout=5)
    assert ok.status_code == 200 and ok.json()["queued"] == {"wechat.refund": ["abnormal"]}
    bad = requests.post(f"{base}/_sandbox/faults", json={"api": "wechat.refund", "faults": ["explode"]}, timeout=5)
    assert bad.status_code == 400 and "explode" in bad.json()["error"]
    modes = requests.get(f"{base}/_sandbox/faults", timeout=5).json()["modes"]
    assert {"system_error", "system_error_after", "fund_change_n", "timeout"} <= set(modes["alipay.trade.refund"])
    assert {"abnormal", "processing", "timeout", "http_500_after"} <= set(modes["wechat.refund"])
