"""One registry of settings: every ``METERPAY_*`` variable is declared once, where its area lives.

Each area declares its variables with :func:`declare` (name, type, default, a one-line doc, and
whether it is a secret): core's are below, the others in ``hardware/settings.py``,
``bot/settings.py``, ``miniapp_api/settings.py``, ``admin/settings.py`` and
``meterpay/settings.py``. Code reads a value with :func:`get`, which parses and checks it and
raises :class:`ConfigError` naming the variable when it is malformed. Values are read from the
environment (and an optional ``.env`` file) at each call, so a test can change one and see it;
``get_settings()`` caches the few core values read on hot paths (``reset_settings()`` forgets).

``meterpay config check`` validates every declared variable at once and prints each problem;
``meterpay config list`` prints every variable with its value, secrets masked; the README's
table of variables is generated from here (``meterpay config list --markdown``), and a test
fails when they differ.

Per-site settings live in the database (``Site.settings``); :func:`declare_site` documents each
key in the same registry, and the README lists them beside the variables.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.errors import ValidationError

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_SECRET_KEY = "dev-insecure-change-me"  # the documented default: fine for tests and the demo, never served
MIN_SECRET_KEY = 32
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
KINDS = ("str", "int", "float", "bool", "yuan", "url", "path", "choice", "list")


class ConfigError(ValidationError, ValueError):
    """A variable is set to something it cannot be; the message names the variable."""

    code = "bad_setting"

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}", field=name)
        self.name = name


@dataclass(frozen=True)
class Var:
    """One environment variable: how it is parsed, its default and what it is for."""

    name: str
    kind: str = "str"            # one of KINDS
    default: str | None = None   # as it would be written in the environment; None: unset
    doc: str = ""
    area: str = "core"
    secret: bool = False         # masked by `config list`
    minimum: float | None = None  # for kind "yuan": in fen
    choices: tuple[str, ...] = ()
    default_doc: str | None = None  # how the README shows a derived default ("METERPAY_PUBLIC_URL", ...)

    def parse(self, text: str) -> Any:
        """The typed value of ``text``; raises ConfigError with a readable reason."""
        kind = self.kind
        try:
            if kind == "int":
                value: Any = int(text)
            elif kind == "float":
                value = float(Decimal(text))
            elif kind == "bool":
                low = text.lower()
                if low not in TRUE + FALSE:
                    raise ConfigError(self.name, f"must be 1 or 0 (true/false, yes/no, on/off), got {text!r}")
                return low in TRUE
            elif kind == "yuan":
                from core.ledger.money import format_fen, parse_yuan  # a leaf module: text <-> fen, nothing else
                try:
                    fen = parse_yuan(text, field=self.name, allow_zero=True)
                except ValidationError as exc:
                    raise ConfigError(self.name, exc.message.split(": ", 1)[-1]) from None
                if self.minimum is not None and fen < self.minimum:  # a yuan variable's minimum is in fen
                    raise ConfigError(self.name, f"must be at least {format_fen(int(self.minimum))} yuan, got {text!r}")
                return fen
            elif kind == "url":
                if "://" not in text:
                    raise ConfigError(self.name, f"must be a URL (scheme://...), got {text!r}")
                return text
            elif kind == "choice":
                if text not in self.choices:
                    raise ConfigError(self.name, f"must be one of {', '.join(self.choices)}, got {text!r}")
                return text
            elif kind == "list":
                return tuple(p.strip() for p in text.split(",") if p.strip())
            elif kind == "path":
                return Path(text)
            else:
                return text
        except ConfigError:
            raise
        except (ValueError, InvalidOperation, ArithmeticError) as exc:
            what = {"int": "a whole number", "float": "a number", "yuan": "an amount in yuan (e.g. 20.00)"}
            reason = what.get(kind)
            raise ConfigError(self.name, f"must be {reason}, got {text!r}" if reason else str(exc)) from None
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(self.name, f"must be at least {self.minimum:g}, got {text!r}")
        return value

    def shown_default(self) -> str:
        if self.default_doc is not None:
            return self.default_doc
        return "unset" if self.default is None else f"`{self.default}`"


@dataclass(frozen=True)
class SiteKey:
    """One key of ``Site.settings`` (stored in the database per site, edited by managers)."""

    key: str
    kind: str
    default_doc: str
    doc: str
    area: str = "core"


_VARS: dict[str, Var] = {}
_SITE_KEYS: dict[str, SiteKey] = {}
_CHECKS: list[Callable[[], list[str]]] = []
_WARNINGS: list[Callable[[], list[str]]] = []
_dotenv_loaded = False


def declare(area: str, *variables: Var) -> None:
    """Register an area's variables; declaring one name twice (from two places) is a bug."""
    for v in variables:
        if v.kind not in KINDS:
            raise ValueError(f"{v.name}: unknown kind {v.kind!r}")
        v = Var(**{**v.__dict__, "area": area})
        known = _VARS.get(v.name)
        if known is not None and known != v:
            raise ValueError(f"{v.name} is declared twice ({known.area} and {area})")
        _VARS[v.name] = v


def declare_site(area: str, *keys: SiteKey) -> None:
    for k in keys:
        _SITE_KEYS[k.key] = SiteKey(k.key, k.kind, k.default_doc, k.doc, area)


def cross_check(fn: Callable[[], list[str]]) -> Callable[[], list[str]]:
    """Register a check of several variables together (returns problems as text)."""
    _CHECKS.append(fn)
    return fn


def warning_check(fn: Callable[[], list[str]]) -> Callable[[], list[str]]:
    """Register a check whose findings work but deserve a change (`config check` prints them, exits 0)."""
    _WARNINGS.append(fn)
    return fn


def _area_rank(area: str) -> tuple[int, str]:
    order = list(AREA_TITLES)
    return (order.index(area) if area in order else len(order), area)


def variables() -> list[Var]:
    """Every declared variable, by area (in AREA_TITLES order) and name."""
    return sorted(_VARS.values(), key=lambda v: (_area_rank(v.area), v.name))


def site_keys() -> list[SiteKey]:
    return sorted(_SITE_KEYS.values(), key=lambda k: (_area_rank(k.area), k.key))


def _load_dotenv() -> None:
    global _dotenv_loaded
    if _dotenv_loaded:
        return
    _dotenv_loaded = True
    from dotenv import load_dotenv
    load_dotenv(os.environ.get("METERPAY_ENV_FILE", ROOT / ".env"), override=False)


def raw(name: str) -> str | None:
    """The variable's text as set (stripped), or None when unset or empty."""
    if name not in _VARS:
        raise KeyError(f"{name} is not a declared setting (declare it with core.config.declare)")
    _load_dotenv()
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def is_set(name: str) -> bool:
    return raw(name) is not None


def get(name: str) -> Any:
    """The typed value of a declared variable (its default when unset; None when neither)."""
    var = _VARS.get(name)
    if var is None:
        raise KeyError(f"{name} is not a declared setting (declare it with core.config.declare)")
    text = raw(name)
    if text is None:
        text = var.default
    return None if text is None else var.parse(text)


def problems() -> list[str]:
    """Every malformed variable and failed cross-check, one line each (empty when all is well)."""
    found = []
    for var in variables():
        try:
            get(var.name)
        except ConfigError as exc:
            found.append(str(exc))
    for check in _CHECKS:
        found.extend(check())
    return found


def warnings() -> list[str]:
    """What works but should change (a deprecated configuration), one line each."""
    found: list[str] = []
    for check in _WARNINGS:
        found.extend(check())
    return found


def shown_value(var: Var) -> str:
    """The value as `config list` prints it: secrets masked, unset shown as such."""
    text = raw(var.name)
    if text is None:
        return f"{var.default} (default)" if var.default is not None else "(unset)"
    if var.secret:
        return "****" + (text[-2:] if len(text) >= 12 else "")
    return text


def markdown() -> str:
    """The README's tables: every variable by area, then the per-site settings."""
    out = []
    area = None
    for var in variables():
        if var.area != area:
            area = var.area
            out += ["", f"### {AREA_TITLES.get(area, area)}", "", "| variable | default | meaning |", "|---|---|---|"]
        doc = var.doc + (" (secret)" if var.secret else "")
        out.append(f"| `{var.name}` | {var.shown_default()} | {doc} |")
    out += ["", "### Per-site settings (in the database, `Site.settings`)", "",
            "| key | type | default | meaning |", "|---|---|---|---|"]
    for k in site_keys():
        out.append(f"| `{k.key}` | {k.kind} | {k.default_doc} | {k.doc} |")
    return "\n".join(out).strip() + "\n"


AREA_TITLES = {
    "core": "Core",
    "ledger": "Ledger and balances",
    "billing": "Billing",
    "supply": "Supply control",
    "alarms": "Alarms and notifications",
    "sites": "Sites and the demo",
    "hardware": "Hardware",
    "bills": "Postpaid bills",
    "batch": "Batch tasks",
    "wechat": "WeChat apps (shared by the mini-program and the bot)",
    "miniapp": "Mini-program and payments",
    "bot": "Bot and alarm channels",
    "admin": "Admin pages",
    "web": "Processes (serve, worker, sandbox)",
}


# --- core's own variables ---------------------------------------------------------------------

declare(
    "core",
    Var("METERPAY_DATABASE_URL", "str", None, "SQLAlchemy URL; `postgresql://user@host/db` for production",
        default_doc="`sqlite:///<project>/var/meterpay.db`"),
    Var("METERPAY_REDIS_URL", "url", None,
        "unset: jobs run in-process; set (`redis://127.0.0.1:6379/0`): jobs go to RQ"),
    Var("METERPAY_SECRET_KEY", "str", DEFAULT_SECRET_KEY,
        "signs sessions, tenant tokens and QR binding tokens; required, 32+ random characters: `serve` and `run` "
        "refuse to start without it (`run --demo` only warns)", secret=True),
    Var("METERPAY_PORT", "int", "5000", "web port for `serve` and `run`", minimum=1),
    Var("METERPAY_TIMEZONE", "str", "Asia/Shanghai",
        "default timezone of sites (tariff periods, cycles, friendly hours)"),
    Var("METERPAY_MAX_AMOUNT", "yuan", "50000",
        "largest single recharge, refund or adjustment in yuan; above it is refused", minimum=1),
    Var("METERPAY_PUBLIC_URL", "url", None,
        "the address tenants and WeChat reach us at (links, QR codes, callbacks)",
        default_doc="`http://127.0.0.1:$METERPAY_PORT`"),
    Var("METERPAY_LOG_LEVEL", "choice", "INFO", "log level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    Var("METERPAY_ENV_FILE", "path", None, "the dotenv file to read", default_doc="`<project>/.env`"),
    Var("METERPAY_SANDBOX", "bool", "0",
        "`1`: sandbox mode (credentials left unset fall back to the local sandbox's; answers labelled "
        "`\"sandbox\": true`)"),
)
declare(
    "ledger",
    Var("METERPAY_BALANCE_CACHE", "bool", "1",
        "`0`: no per-process balance cache; every balance read queries PostgreSQL (SQLite never caches; set "
        "`0` behind PgBouncer in transaction pooling, where LISTEN does not work)"),
    Var("METERPAY_BALANCE_CACHE_TTL", "float", "60",
        "seconds a cached balance lives at most (a safety net for writes that bypass the ledger)", minimum=0),
)
declare(
    "billing",
    Var("METERPAY_IMPORT_CHUNK", "int", None,
        "rows per transaction for `readings import` and the benchmark (a row with per-period registers counts "
        "as three)", minimum=1, default_doc="`250000` on PostgreSQL, `20000` on SQLite"),
)
declare(
    "supply",
    Var("METERPAY_FRIENDLY_NIGHTS", "str", "22:00-07:00",
        "friendly nights when a site says nothing (`off` for none)"),
    Var("METERPAY_FRIENDLY_WEEKENDS", "bool", "0", "weekends friendly by default"),
    Var("METERPAY_FRIENDLY_HOLIDAYS", "bool", "1", "Chinese public holidays friendly by default"),
    Var("METERPAY_EMERGENCY_CREDIT", "yuan", "0", "emergency credit in yuan when a site says nothing"),
    Var("METERPAY_RESTORE_ABOVE", "yuan", "0", "restore when the balance is above this (yuan)"),
    Var("METERPAY_ENFORCE_RETRIES", "int", "3",
        "times a relay/valve found in the other state than desired is commanded again (per desired state)",
        minimum=0),
    Var("METERPAY_ENFORCE_BACKOFF_MINUTES", "float", "5",
        "minutes after a repeated relay/valve command before the next repeat; doubled each time", minimum=0),
)
declare(
    "alarms",
    Var("METERPAY_NOTIFY_DEFAULT_CHANNELS", "list", "wechat_template,sms", "channels of tenants who chose none"),
    Var("METERPAY_WEBHOOK_URL", "url", None, "webhook for every site without its own `webhook_url`"),
)
declare(
    "wechat",
    Var("METERPAY_WECHAT_APPID", "str", None,
        "official-account app id: the bot, template messages, official-account JSAPI pay"),
    Var("METERPAY_WECHAT_SECRET", "str", None, "official-account app secret (access tokens)", secret=True),
    Var("METERPAY_MINIAPP_APPID", "str", None,
        "mini-program app id: login (code2session), its WeChat Pay orders, subscribe messages, recharge links",
        default_doc="`METERPAY_WECHAT_APPID` for login, pay and subscribe messages while no "
                    "`METERPAY_MINIAPP_*` is set (the old one-app configuration; `config check` warns)"),
    Var("METERPAY_MINIAPP_SECRET", "str", None, "mini-program app secret (code2session, access tokens)",
        secret=True, default_doc="`METERPAY_WECHAT_SECRET`, as the app id"),
    Var("METERPAY_WECHAT_API_BASE", "url", "https://api.weixin.qq.com", "WeChat API base (mini-program and bot)"),
)
declare(
    "miniapp",
    Var("METERPAY_REFUND_STUCK_HOURS", "float", "24",
        "a refund whose outcome is still unknown (or pending) after this many hours is audited as "
        "`refund_stuck` for a manager, once; it is never reversed for that", minimum=0),
)
declare(
    "sites",
    Var("METERPAY_SIM_PORT_BASE", "int", "17100",
        "first simulator port used by `demo seed` for the demo gateways", minimum=1),
)
declare_site(
    "supply",
    SiteKey("friendly_hours", "object", "the `METERPAY_FRIENDLY_*` variables",
            "`{\"nights\": \"22:00-07:00\", \"weekends\": false, \"holidays\": true}`: no automatic cut then"),
    SiteKey("emergency_credit_fen", "fen", "`METERPAY_EMERGENCY_CREDIT`", "credit below zero before a cut"),
    SiteKey("restore_above_fen", "fen", "`METERPAY_RESTORE_ABOVE`", "restore when the balance is above this"),
)
declare_site(
    "alarms",
    SiteKey("alarm_levels", "list", "50, 20 and 0 yuan",
            "three levels `{\"amount_fen\", \"times\", \"every_minutes\"}` for accounts without their own"),
    SiteKey("webhook_url", "url", "`METERPAY_WEBHOOK_URL`", "where this site's alarms are posted as JSON"),
    SiteKey("voice_min_level", "int", "3", "lowest alarm level that also places a voice call"),
)
declare_site(
    "hardware",
    SiteKey("poll_interval_minutes", "int", "15", "how often the site's meters are read"),
)
declare_site(
    "monthend",
    SiteKey("month_end", "object", "`{\"day\": 1, \"time\": \"02:00\"}`",
            "when the month-end run (charges, apportionment, bills) runs for the month before, site time; "
            "`{\"enabled\": false}`: never by schedule"),
)
declare_site(
    "bills",
    SiteKey("bill_due_days", "int", "15", "postpaid bills: days from confirmation to the due date (overdue after it)"),
    SiteKey("arrears_notice", "object", "`{\"after_days\": 1, \"every_days\": 7, \"times\": 3}`",
            "欠费通知 of an overdue bill: the first `after_days` after the due date, then every `every_days`, "
            "at most `times` (0: none), through the tenant's alarm channels"),
)


# --- the core values hot paths read, cached -----------------------------------------------------

@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=lambda: f"sqlite:///{ROOT / 'var' / 'meterpay.db'}")
    redis_url: str | None = None
    secret_key: str = DEFAULT_SECRET_KEY
    port: int = 5000
    timezone: str = "Asia/Shanghai"
    max_amount_fen: int = 5_000_000  # largest single money movement a front may ask for, in fen
    public_url: str = "http://127.0.0.1:5000"  # where web pages and QR codes point tenants to
    log_level: str = "INFO"

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_url)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    defaults = Settings()
    port = get("METERPAY_PORT")
    return Settings(
        database_url=get("METERPAY_DATABASE_URL") or defaults.database_url,
        redis_url=get("METERPAY_REDIS_URL"),
        secret_key=get("METERPAY_SECRET_KEY"),
        port=port,
        timezone=get("METERPAY_TIMEZONE"),
        max_amount_fen=get("METERPAY_MAX_AMOUNT"),
        public_url=get("METERPAY_PUBLIC_URL") or f"http://127.0.0.1:{port}",
        log_level=get("METERPAY_LOG_LEVEL"),
    )


def reset_settings() -> None:
    get_settings.cache_clear()


def sandbox() -> bool:
    return bool(get("METERPAY_SANDBOX"))


def secret_key_problem(key: str | None) -> str | None:
    """Why ``key`` must not sign cookies and tokens of a served app (None when it may): unset or
    empty, the documented default (anyone can forge a manager's session with it), or shorter than
    32 characters."""
    if key is None or not key.strip():
        return "METERPAY_SECRET_KEY is not set"
    if key.strip() == DEFAULT_SECRET_KEY:
        return f"METERPAY_SECRET_KEY is the documented default {DEFAULT_SECRET_KEY!r}"
    if len(key.strip()) < MIN_SECRET_KEY:
        return f"METERPAY_SECRET_KEY is {len(key.strip())} characters long, shorter than {MIN_SECRET_KEY}"
    return None


def secret_key_advice() -> str:
    return (f"set it to {MIN_SECRET_KEY}+ random characters, e.g. "
            "export METERPAY_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')")


@cross_check
def _secret_key_is_strong() -> list[str]:
    problem = secret_key_problem(raw("METERPAY_SECRET_KEY"))
    if problem is None:
        return []
    return [f"{problem}: `serve` and `run` refuse to start with it (`run --demo` only warns); {secret_key_advice()}"]


def miniapp_vars() -> tuple[str, str]:
    """The two variables that hold the mini-program's app id and secret.

    ``METERPAY_MINIAPP_APPID`` / ``_SECRET``. Before the mini-program and the official account were
    configured apart, ``METERPAY_WECHAT_APPID`` / ``_SECRET`` served both; a configuration that sets
    neither ``METERPAY_MINIAPP_*`` but sets ``METERPAY_WECHAT_APPID`` keeps working that way (the
    mini-program's login and pay use the ``WECHAT`` pair) and ``config check`` warns.
    """
    if not is_set("METERPAY_MINIAPP_APPID") and not is_set("METERPAY_MINIAPP_SECRET") \
            and is_set("METERPAY_WECHAT_APPID"):
        return "METERPAY_WECHAT_APPID", "METERPAY_WECHAT_SECRET"
    return "METERPAY_MINIAPP_APPID", "METERPAY_MINIAPP_SECRET"


@cross_check
def _miniapp_secret_has_its_app() -> list[str]:
    if is_set("METERPAY_MINIAPP_SECRET") and not is_set("METERPAY_MINIAPP_APPID"):
        return ["METERPAY_MINIAPP_SECRET: set without METERPAY_MINIAPP_APPID (the mini-program's app id)"]
    return []


@warning_check
def _wechat_apps_apart() -> list[str]:
    if miniapp_vars()[0] == "METERPAY_WECHAT_APPID":
        return ["METERPAY_WECHAT_APPID also serves the mini-program's login and pay (METERPAY_MINIAPP_APPID/_SECRET "
                "are unset): set METERPAY_MINIAPP_APPID and METERPAY_MINIAPP_SECRET to the mini-program's and keep "
                "METERPAY_WECHAT_APPID/_SECRET for the official account"]
    if is_set("METERPAY_MINIAPP_APPID") and not is_set("METERPAY_MINIAPP_SECRET"):
        return ["METERPAY_MINIAPP_APPID is set without METERPAY_MINIAPP_SECRET: mini-program login is refused"]
    return []


@cross_check
def _timezone_exists() -> list[str]:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    name = get("METERPAY_TIMEZONE")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return [f"METERPAY_TIMEZONE: unknown timezone {name!r}"]
    return []
