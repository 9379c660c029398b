"""Message catalogs: Chinese first (the message ids are the Chinese texts), English by catalog.

One set of gettext catalogs (``core/translations/<lang>/LC_MESSAGES/messages.po``, compiled to
``.mo``) serves every front: the admin pages through Flask-Babel (configured to read this
directory), and the bot and the ledger's labels through :func:`gettext` here, which uses Babel's
``Translations`` directly because core never imports Flask.

Adding a text: write it in Chinese inside ``_()`` (admin) or ``i18n.gettext()`` (core, bot), add
its English to ``core/translations/en/LC_MESSAGES/messages.po`` and run ``make translations``
(``compile_catalogs()``); a test fails when a ``.mo`` is older than its ``.po``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.support import NullTranslations, Translations

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"
LANGS = ("zh", "en")
DEFAULT_LANG = "zh"

# Ledger entry kinds as people read them (message ids; English in the catalog): the pages' words, and
# the terser words of chat replies where they differ.
ENTRY_KIND_TEXT = {
    "opening": "开户余额", "recharge": "充值", "consumption": "扣费", "refund": "退款", "adjustment": "调整",
    "reversal": "冲正", "settlement": "结算", "charge": "收费", "apportionment": "公摊", "payment": "缴费",
    "meter_credit": "写入电表",
}
ENTRY_KIND_CHAT = {**ENTRY_KIND_TEXT, "opening": "开户", "refund": "退费", "settlement": "结清"}


@lru_cache(maxsize=8)
def translations(lang: str) -> NullTranslations:
    """The compiled catalog of ``lang`` (an empty one for Chinese, whose texts are the ids)."""
    if lang not in LANGS or lang == DEFAULT_LANG:
        return NullTranslations()
    return Translations.load(str(TRANSLATIONS_DIR), [lang], DOMAIN)


def gettext(message: str, lang: str = DEFAULT_LANG, **variables: Any) -> str:
    """``message`` (Chinese) in ``lang``; ``%(name)s`` placeholders filled from ``variables``."""
    text = translations(lang).ugettext(message)
    return text % variables if variables else text


def entry_kind_label(kind: str, lang: str = DEFAULT_LANG, *, chat: bool = False) -> str:
    """A ledger entry kind (``recharge``, ``consumption``, ...) as a person reads it (``chat``: the
    short words of chat replies)."""
    text = (ENTRY_KIND_CHAT if chat else ENTRY_KIND_TEXT).get(kind)
    return kind if text is None else gettext(text, lang)


def compile_catalogs(check: bool = False) -> list[str]:
    """Compile every ``.po`` to its ``.mo``; with ``check``, only list the ones that are stale."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    stale = []
    for po in sorted(TRANSLATIONS_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        mo = po.with_suffix(".mo")
        with po.open("rb") as f:
            catalog = read_po(f)
        wanted = {m.id: m.string for m in catalog if m.id}
        if mo.exists():
            with mo.open("rb") as f:
                have = dict(Translations(f)._catalog)
            have.pop("", None)
            if have == {k: v for k, v in wanted.items() if v}:
                continue
        stale.append(str(po.relative_to(TRANSLATIONS_DIR)))
        if not check:
            with mo.open("wb") as f:
                write_mo(f, catalog)
    translations.cache_clear()
    return stale
