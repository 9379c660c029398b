"""``copy_text``'s fast path (no escape needed) gives exactly what the full escape gives."""
from hypothesis import given
from hypothesis import strategies as st

from core.bulk_sql import _COPY_ESCAPES, copy_text


@given(st.text(alphabet=st.sampled_from(list("ab物\\\t\n\r\"{} "))))
def test_copy_text_escapes_like_translate(value: str) -> None:
    assert copy_text(value) == value.translate(_COPY_ESCAPES)


def test_copy_text_plain_and_special() -> None:
    assert copy_text('{"a": "x\\"y"}') == '{"a": "x\\\\"y"}'
    assert copy_text("a\tb\nc\rd") == "a\\tb\\nc\\rd"
    assert copy_text("物业费 2026-01") == "物业费 2026-01"
    assert copy_text(None) == "\\N"
