"""JSON shapes of the mini-program API (pydantic), the source of the OpenAPI document.

Money goes out twice: ``amount`` as a yuan string ("50.00") for display and ``amount_fen`` as
an integer for arithmetic. Money comes in only as a yuan string; floats are refused.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_ID = 2**53 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. invalid, not_found, unauthorized")
    message: str
    field: str | None = None


class LoginIn(Strict):
    code: str = Field(min_length=1, max_length=128, description="the code from wx.login()")


class LoginOut(BaseModel):
    token: str = Field(description="send as `Authorization: Bearer <token>`")
    expires_in: int
    sandbox: bool = False


class BindIn(Strict):
    token: str = Field(min_length=1, max_length=512, description="the binding token from the room's QR code")
    phone_last4: str = Field(min_length=4, max_length=4, pattern=r"^[0-9]{4}$")


class Meter(BaseModel):
    serial: str
    kind: str
    online: bool
    relay_state: str
    valve_state: str
    remaining_fen: int | None = None
    last_seen_at: datetime | None = None


class UsagePoint(BaseModel):
    period: str
    usage: str = Field(description="kWh (to 0.01) or m3 (to 0.001) as a decimal string")
    cost: str
    cost_fen: int
    spending: dict[str, str] = Field(default_factory=dict, description="what each utility (electricity, water) "
                                     "cost in the period, yuan; usage dated by the reading that closed it")
    spending_fen: dict[str, int] = Field(default_factory=dict)


BALANCE_SOURCE = Field("wallet", description="wallet: the platform holds the balance; meter: a prepaid meter "
                                                "holds it and `balance` is its remaining amount as last read")
BALANCE_READ_AT = Field(None, description="source meter: when the meter reported `balance`")
PENDING_FEN = Field(0, description="source meter: money paid in that the meter has not confirmed yet (fen)")


class AccountBrief(BaseModel):
    id: int
    site: str
    building: str
    floor: str
    room: str
    status: str
    billing_mode: str
    balance: str | None = Field(description="yuan; null only for a prepaid meter that has never been read")
    balance_fen: int | None
    fee_status: str = Field(description="normal, alarm1-3, arrears, keep_power, closed, or unread (a prepaid "
                                        "meter never read)")
    balance_source: Literal["wallet", "meter"] = BALANCE_SOURCE
    balance_read_at: datetime | None = BALANCE_READ_AT
    pending_fen: int = PENDING_FEN


class AccountList(BaseModel):
    accounts: list[AccountBrief]


class TariffInfo(BaseModel):
    utility: Literal["electricity", "water"]
    plan: str | None = Field(description="the plan pricing this utility; null: none set, usage waits to be billed")
    unit: Literal["kWh", "m3"]
    price: str | None = Field(description="the prices in force today as one line, e.g. \"5.0 元/m³\"")


class AccountDetail(AccountBrief):
    meters: list[Meter]
    today: UsagePoint
    tariffs: list[TariffInfo] = Field(description="one per utility the account has a meter of")


class Balance(BaseModel):
    account_id: int
    balance: str | None = Field(description="yuan; null only for a prepaid meter that has never been read")
    balance_fen: int | None
    balance_source: Literal["wallet", "meter"] = BALANCE_SOURCE
    balance_read_at: datetime | None = BALANCE_READ_AT
    pending_fen: int = PENDING_FEN


class Usage(BaseModel):
    account_id: int
    granularity: Literal["day", "month", "year"]
    kind: Literal["electricity", "water"]
    tariff: TariffInfo | None = Field(default=None, description="the plan pricing this kind of usage")
    points: list[UsagePoint]


class UsageQuery(Strict):
    granularity: Literal["day", "month", "year"] = "day"
    by: Literal["day", "month", "year"] | None = Field(None, description="the same as granularity (wins over it)")
    kind: Literal["electricity", "water"] = "electricity"
    start: date
    end: date


class Transaction(BaseModel):
    id: int
    kind: str
    memo: str
    at: datetime
    amount: str
    amount_fen: int


class Transactions(BaseModel):
    account_id: int
    transactions: list[Transaction]


class TransactionsQuery(Strict):
    limit: int = Field(20, ge=1, le=100)
    before: int | None = Field(None, ge=1, le=MAX_ID)


class BillLine(BaseModel):
    line_no: int
    kind: str = Field(description="energy | charge | apportion | credit | other")
    code: str
    name: str
    quantity: str | None = None
    amount: str
    amount_fen: int


class Bill(BaseModel):
    id: int
    bill_no: str = ""
    period: str
    period_start: str | None = None
    period_end: str | None = None
    state: str = Field(description="draft | confirmed | partly_paid | paid")
    overdue: bool = False
    amount: str = Field(description="the bill's total (yuan)")
    amount_fen: int
    paid: str = "0.00"
    paid_fen: int = 0
    credited: str = "0.00"
    credited_fen: int = 0
    open: str = Field("0.00", description="still owed: what a payment of this bill pays")
    open_fen: int = 0
    due_date: str | None = None
    lines: list[BillLine] = []


class BillPayIn(Strict):
    channel: Literal["wechat", "alipay"]


class Bills(BaseModel):
    account_id: int
    bills: list[Bill]


class RechargeIn(Strict):
    amount: str = Field(min_length=1, max_length=20, pattern=r"^\s*[+-]?[0-9]+(\.[0-9]+)?\s*$",
                        description='yuan as a decimal string, e.g. "50.00"')
    channel: Literal["wechat", "alipay"]


class RequestPayment(BaseModel):
    appId: str
    timeStamp: str
    nonceStr: str
    package: str
    signType: str
    paySign: str


class WechatPayParams(BaseModel):
    prepay_id: str
    request_payment: RequestPayment = Field(description="pass to wx.requestPayment as is")


class AlipayParams(BaseModel):
    qr_code: str
    qr_png: str = Field(description="URL of a PNG of qr_code")


class Order(BaseModel):
    order_no: str
    account_id: int
    channel: str
    amount: str
    amount_fen: int
    state: str
    created_at: datetime
    paid_at: datetime | None = None


class RechargeOut(Order):
    wechat: WechatPayParams | None = None
    alipay: AlipayParams | None = None
    sandbox: bool = False
    sandbox_pay_url: str | None = Field(None, description="sandbox mode only: open to pay without real money")


class BillPayOut(RechargeOut):
    bill_no: str


class Ping(BaseModel):
    ok: bool
