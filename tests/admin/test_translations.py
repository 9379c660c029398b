"""The pages' texts come from one gettext catalog (core/translations), Chinese ids, English entries."""
import re
from pathlib import Path

from babel.messages.pofile import read_po

from core import i18n

ROOT = Path(__file__).resolve().parents[2]
MSG = re.compile(r"""\b_\(\s*(['"])((?:(?!\1).)+)\1""")


def _catalog() -> dict[str, str]:
    with (i18n.TRANSLATIONS_DIR / "en" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return {m.id: m.string for m in read_po(f) if m.id}


def test_every_text_of_the_admin_pages_has_its_english():
    english = _catalog()
    missing = set()
    for path in [*(ROOT / "admin").glob("*.py"), *(ROOT / "templates" / "admin").glob("*.html")]:
        for _q, msgid in MSG.findall(path.read_text(encoding="utf-8")):
            if not english.get(msgid):
                missing.add(f"{path.name}: {msgid}")
    missing |= {f"entry kind: {t}" for t in {*i18n.ENTRY_KIND_TEXT.values(), *i18n.ENTRY_KIND_CHAT.values()}
                if not english.get(t)}
    assert sorted(missing) == []


def test_the_compiled_catalogs_are_up_to_date():
    assert i18n.compile_catalogs(check=True) == [], "run `make translations`"


def test_core_translates_with_the_same_catalog_as_the_pages():
    assert i18n.gettext("房间监控", "en") == _catalog()["房间监控"]
    assert i18n.gettext("房间监控") == "房间监控"
    assert i18n.gettext("已充值 ¥%(amount)s", "en", amount="5.00") == "Recharged ¥5.00"
    assert i18n.entry_kind_label("refund", "en") == "Refund" and i18n.entry_kind_label("refund") == "退款"
    assert i18n.entry_kind_label("refund", chat=True) == "退费"


def test_a_page_follows_the_managers_language(manage):
    manage.as_manager("alice", all_sites=True)
    manage.client.get("/admin/lang/en")
    page = manage.client.get("/admin/audit").text
    assert "Audit log" in page and "操作日志" not in page
