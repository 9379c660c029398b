"""The mini-program JSON API under /api/v1. Each view: authenticate, parse, call core, render."""
from __future__ import annotations

import pydantic
from flask import Blueprint, Response, g, jsonify, request

from core.bills import service as bills_service
from core.db import new_session, session_scope
from core.errors import NotFound, ValidationError
from core.ledger.money import format_fen, parse_yuan
from core.sites import selfservice
from miniapp_api import auth, openapi, qr, recharge, schemas
from miniapp_api import settings as cfg
from miniapp_api.openapi import endpoint

bp = Blueprint("miniapp_api", __name__, url_prefix="/api/v1")


def parse(model: type[pydantic.BaseModel], data) -> pydantic.BaseModel:
    if data is None:
        raise ValidationError("body: must be a JSON object")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or None
        raise ValidationError(f"{field or 'body'}: {err.get('msg', 'invalid')}", field=field) from None


def body(model):
    return parse(model, request.get_json(silent=True))


def query(model):
    return parse(model, request.args.to_dict())


def render(model: pydantic.BaseModel, status: int = 200):
    return Response(model.model_dump_json(), status=status, mimetype="application/json")


def _id(value: int) -> int:
    if value > schemas.MAX_ID:
        raise NotFound(f"no account {value}")
    return value


def _shown(bal) -> dict:
    """The balance keys of a response from a ``core.alarms.shown.ShownBalance``."""
    return dict(balance=None if bal.fen is None else format_fen(bal.fen), balance_fen=bal.fen,
                balance_source=bal.source, balance_read_at=bal.read_at, pending_fen=bal.pending_fen)


def _brief(session, account) -> dict:
    info = selfservice.summary(session, account)
    return dict(id=account.id, site=info["site"], building=info["building"], floor=info["floor"],
                room=info["room"], status=account.status, billing_mode=account.billing_mode,
                fee_status=info["fee_status"], **_shown(info["balance"])), info


def _usage_point(p: selfservice.UsagePoint) -> schemas.UsagePoint:
    spent = p.spending_fen or {}
    return schemas.UsagePoint(period=p.period, usage=str(p.usage), cost=format_fen(p.cost_fen), cost_fen=p.cost_fen,
                              spending={k: format_fen(v) for k, v in spent.items()}, spending_fen=dict(spent))


def _order(o) -> dict:
    return dict(order_no=o.order_no, account_id=o.account_id, channel=o.channel, amount=format_fen(o.amount_fen),
                amount_fen=o.amount_fen, state=o.state, created_at=o.created_at, paid_at=o.paid_at)


@endpoint(bp, "get", "/ping", summary="Trivial endpoint (benchmark baseline)", response=schemas.Ping, auth=False,
          errors=())
def ping():
    return Response('{"ok":true}', mimetype="application/json")


@endpoint(bp, "post", "/auth/login", summary="Log in with the code from wx.login()", body=schemas.LoginIn,
          response=schemas.LoginOut, auth=False, errors=(400, 401, 502, 503))
def login():
    data = body(schemas.LoginIn)
    openid = auth.code_to_openid(data.code)
    return render(schemas.LoginOut(token=auth.issue_token(openid), expires_in=cfg.token_ttl(),
                                   sandbox=cfg.sandbox()))


@endpoint(bp, "post", "/bindings", summary="Bind the room of a scanned QR code (last 4 phone digits)",
          body=schemas.BindIn, response=schemas.AccountBrief, errors=(400, 401, 403, 404))
@auth.tenant_required
def bind():
    data = body(schemas.BindIn)
    room_id = qr.room_from_token(data.token)
    with session_scope() as session:
        account = selfservice.bind(session, g.openid, room_id, data.phone_last4)
        brief, _ = _brief(session, account)
    return render(schemas.AccountBrief(**brief))


@endpoint(bp, "get", "/accounts", summary="Accounts I am bound to", response=schemas.AccountList, errors=())
@auth.tenant_required
def accounts():
    with new_session() as session:
        items = [schemas.AccountBrief(**_brief(session, a)[0]) for a in selfservice.accounts_of(session, g.openid)]
    return render(schemas.AccountList(accounts=items))


@endpoint(bp, "get", "/accounts/<int:account_id>", summary="One account: balance, status, meters, today",
          response=schemas.AccountDetail)
@auth.tenant_required
def account(account_id: int):
    with new_session() as session:
        acct = selfservice.account_for(session, g.openid, _id(account_id))
        brief, info = _brief(session, acct)
        meters = [schemas.Meter(**m) for m in info["meters"]]
        return render(schemas.AccountDetail(**brief, meters=meters, today=_usage_point(info["today"]),
                                            tariffs=[schemas.TariffInfo(**t) for t in info["tariffs"]]))


@endpoint(bp, "get", "/accounts/<int:account_id>/balance", summary="Just the balance (fast)",
          response=schemas.Balance)
@auth.tenant_required
def balance(account_id: int):
    bal = selfservice.bound_balance(g.openid, _id(account_id))
    if bal is None:
        raise NotFound(f"no account {account_id}")
    if bal.source == "wallet":  # the hot path, no model: the three keys (the others keep their defaults)
        return Response(f'{{"account_id":{account_id},"balance":"{format_fen(bal.fen or 0)}","balance_fen":{bal.fen}}}',
                        mimetype="application/json")
    return render(schemas.Balance(account_id=account_id, **_shown(bal)))


@endpoint(bp, "delete", "/accounts/<int:account_id>/binding", summary="Unbind this account from me",
          response=schemas.Ping)
@auth.tenant_required
def unbind(account_id: int):
    with session_scope() as session:
        selfservice.unbind(session, g.openid, _id(account_id))
    return render(schemas.Ping(ok=True))


@endpoint(bp, "get", "/accounts/<int:account_id>/usage",
          summary="Usage, cost and spending per utility by day, month or year (charts)",
          query=schemas.UsageQuery, response=schemas.Usage)
@auth.tenant_required
def usage(account_id: int):
    q = query(schemas.UsageQuery)
    by = q.by or q.granularity
    points, info = selfservice.usage_view(g.openid, _id(account_id), by, q.start, q.end, q.kind)
    tariff = schemas.TariffInfo(**info)
    return render(schemas.Usage(account_id=account_id, granularity=by, kind=q.kind, tariff=tariff,
                                points=[_usage_point(p) for p in points]))


@endpoint(bp, "get", "/accounts/<int:account_id>/transactions", summary="Ledger transactions, newest first",
          query=schemas.TransactionsQuery, response=schemas.Transactions)
@auth.tenant_required
def transactions(account_id: int):
    q = query(schemas.TransactionsQuery)
    with new_session() as session:
        acct = selfservice.account_for(session, g.openid, _id(account_id))
        rows = selfservice.transactions(session, acct, limit=q.limit, before_id=q.before)
    return render(schemas.Transactions(account_id=account_id, transactions=[
        schemas.Transaction(**r, amount=format_fen(r["amount_fen"])) for r in rows]))


@endpoint(bp, "get", "/accounts/<int:account_id>/bills", summary="Bills (postpaid accounts)",
          response=schemas.Bills)
@auth.tenant_required
def bills(account_id: int):
    with new_session() as session:
        acct = selfservice.account_for(session, g.openid, _id(account_id))
        rows = _bills(session, acct.id)
    return render(schemas.Bills(account_id=account_id, bills=rows))


def _bills(session, account_id: int) -> list[schemas.Bill]:
    """The account's bills and credit notes (not drafts: a draft is not owed yet), newest first."""
    out = []
    for row in reversed(bills_service.tenant_bills(session, account_id)):
        d = row.as_json()
        out.append(schemas.Bill(id=row.bill.id, bill_no=d["bill_no"], period=d["period"],
                                period_start=d["period_start"], period_end=d["period_end"], state=d["state"],
                                overdue=d["overdue"], amount=d["total"], amount_fen=d["total_fen"], paid=d["paid"],
                                paid_fen=d["paid_fen"], credited=d["credited"], credited_fen=d["credited_fen"],
                                open=d["open"], open_fen=d["open_fen"], due_date=d["due_date"],
                                lines=[schemas.BillLine(**ln) for ln in d["lines"]]))
    return out


@endpoint(bp, "post", "/bills/<bill_no>/pay", summary="Pay a bill: an order for what it still owes, and pay parameters",
          body=schemas.BillPayIn, response=schemas.BillPayOut, errors=(400, 401, 404, 409, 502, 503))
@auth.tenant_required
def pay_bill(bill_no: str):
    data = body(schemas.BillPayIn)
    result = recharge.start_bill(bill_no[:40], data.channel, openid=g.openid, client_ip=request.remote_addr)
    order, params = result["order"], result["params"]
    out = schemas.BillPayOut(**_order(order), bill_no=order.bill_no, sandbox=cfg.sandbox(),
                             sandbox_pay_url=result["sandbox_pay_url"])
    _pay_params(out, data.channel, order, params)
    return render(out)


def _pay_params(out, channel: str, order, params: dict) -> None:
    if channel == "wechat":
        out.wechat = schemas.WechatPayParams(**params)
    else:
        out.alipay = schemas.AlipayParams(qr_code=params["qr_code"],
                                          qr_png=f"{openapi.PREFIX}/orders/{order.order_no}/qr.png")


@endpoint(bp, "post", "/accounts/<int:account_id>/recharge", summary="Start a recharge: an order and pay parameters",
          body=schemas.RechargeIn, response=schemas.RechargeOut, errors=(400, 401, 404, 409, 502, 503))
@auth.tenant_required
def start_recharge(account_id: int):
    data = body(schemas.RechargeIn)
    amount_fen = parse_yuan(data.amount)
    with new_session() as session:
        acct = selfservice.account_for(session, g.openid, _id(account_id))
    result = recharge.start(acct.id, amount_fen, data.channel, openid=g.openid, client_ip=request.remote_addr)
    order, params = result["order"], result["params"]
    out = schemas.RechargeOut(**_order(order), sandbox=cfg.sandbox(), sandbox_pay_url=result["sandbox_pay_url"])
    _pay_params(out, data.channel, order, params)
    return render(out)


@endpoint(bp, "get", "/orders/<order_no>", summary="An order's state (a pending one is checked with the provider)",
          response=schemas.Order)
@auth.tenant_required
def order(order_no: str):
    with new_session() as session:
        o = selfservice.order_for(session, g.openid, order_no)
    if o.state == "pending" and recharge.should_ask_provider(o):
        from miniapp_api.jobs import settle_by_query
        if settle_by_query(order_no) == "credited":
            with new_session() as session:
                o = selfservice.order_for(session, g.openid, order_no)
    return render(schemas.Order(**_order(o)))


@endpoint(bp, "get", "/orders/<order_no>/qr.png", summary="PNG of an Alipay order's QR code", media="image/png")
@auth.tenant_required
def order_qr(order_no: str):
    with new_session() as session:
        o = selfservice.order_for(session, g.openid, order_no)
    code = ((o.provider_data or {}).get("prepare") or {}).get("qr_code")
    if not code:
        raise NotFound(f"order {order_no} has no QR code")
    return Response(qr.png(code), mimetype="image/png")


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(openapi.build())


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def not_found(rest):
    return jsonify({"code": "not_found", "message": f"no endpoint /api/v1/{rest}"}), 404


@bp.errorhandler(405)
def method_not_allowed(_err):
    return jsonify({"code": "method_not_allowed", "message": "method not allowed"}), 405
