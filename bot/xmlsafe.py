"""Parse WeChat's XML with entity expansion off: a DTD, an entity or an external reference is refused.

WeChat never sends a DOCTYPE, so any document carrying one is an attack (XXE, billion laughs)
and is refused before a single entity is expanded. Bodies above ``MAX_BODY`` are refused too.
"""
from __future__ import annotations

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

MAX_BODY = 64 * 1024


class UnsafeXml(ValueError):
    """The body is not a plain WeChat XML message."""


def parse(body: bytes | str) -> dict[str, str]:
    """``<xml><A>1</A>...</xml>`` → ``{"A": "1", ...}`` (one level, as WeChat sends)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not body or len(body) > MAX_BODY:
        raise UnsafeXml("empty or too large")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise UnsafeXml("DTDs and entities are not accepted")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, SafeET.ParseError) as exc:
        raise UnsafeXml(f"bad XML: {type(exc).__name__}") from None
    if root.tag != "xml":
        raise UnsafeXml("root element must be <xml>")
    out: dict[str, str] = {}
    for child in root:
        if len(child):
            out[child.tag] = {g.tag: (g.text or "") for g in child}  # type: ignore[assignment]
        else:
            out[child.tag] = child.text or ""
    return out
