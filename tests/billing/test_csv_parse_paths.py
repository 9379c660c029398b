"""The import's short path for plain rows parses exactly what the careful path does, and sends
everything else to the careful path (which names the problem)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.billing.csv_import import COLUMNS, _Meters, _Parser
from core.errors import MeterpayError

SERIALS = ["M1", "M2", " M1", "M3 ", "", "NOPE"]
TIMES = ["2026-07-01T00:15:00+08:00", "2026-07-01T00:15:00", " 2026-07-01T00:30:00+08:00", "2026-13-01T00:00:00",
         "", "2026-07-01 00:45:00+00:00"]
VALUES = ["12.5", "0", "007.120", "12.", "1.2345", "1.2340", "-1", "1e3", "NaN", "abc", " 3.5", "",
          "999999999999.999", "1000000000000", "5.", ".5"]


def meters():
    m = _Meters()
    m.known.update({"M1": (1, "Asia/Shanghai"), "M2": (2, "Asia/Urumqi"), "M3": (3, "UTC"), "NOPE": None})
    return m


row = st.lists(st.sampled_from(VALUES), min_size=0, max_size=6).flatmap(
    lambda tail: st.tuples(st.sampled_from(SERIALS), st.sampled_from(TIMES), st.just(tail)))


@settings(max_examples=300, deadline=None)
@given(st.lists(row, min_size=1, max_size=30), st.sampled_from([COLUMNS, ("taken_at", "meter_serial", "total",
                                                                           "peak", "valley")]))
def test_short_path_equals_the_careful_path(rows, header):
    col = {name: i for i, name in enumerate(header)}
    pending = []
    for n, (serial, at, tail) in enumerate(rows, start=2):
        fields = {"meter_serial": serial, "taken_at": at}
        cells = [""] * max(len(header), 2)
        for name, i in col.items():
            if name in fields:
                cells[i] = fields[name]
        others = [i for name, i in col.items() if name not in fields]
        width = 2 + len(tail) if len(tail) <= len(others) else len(cells)
        for i, v in zip(others, tail):
            cells[i] = v
        pending.append((n, cells[:max(width, max(col["meter_serial"], col["taken_at"]) + 1)]))
    careful_good, careful_errors = [], []
    slow = _Parser(col, meters())
    for line, cells in pending:
        try:
            careful_good.append(slow(cells))
        except MeterpayError as exc:
            careful_errors.append(f"line {line}: {exc.message}")
    good, errors = [], []
    fast = _Parser(col, meters())
    fast.rows(list(pending), good, errors)
    fast.rows(list(pending), good2 := [], errors2 := [])  # second time: times and serials are warm
    assert good == careful_good == good2
    assert errors == careful_errors == errors2


def test_rows_with_registers_make_smaller_chunks(monkeypatch):
    """Memory, not rows, bounds a chunk: a row with per-period registers weighs three plain rows."""
    import io

    from core.billing import csv_import

    monkeypatch.setattr(csv_import._Meters, "load", lambda self, session, serials: self.known.update(
        {s: (1, "Asia/Shanghai") for s in serials}))

    class NoSession:
        def __enter__(self):
            return None

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(csv_import, "session_scope", NoSession)
    head = "meter_serial,taken_at,total,sharp,peak,flat,valley\n"
    plain = "".join(f"M1,2026-07-01T00:{k:02d}:00+08:00,{k}.5,,,,\n" for k in range(60))
    regs = "".join(f"M1,2026-07-01T01:{k:02d}:00+08:00,{k}.5,1,1,1,1\n" for k in range(60))
    sizes = [len(c.readings) for c in csv_import._parsed_chunks(io.BytesIO((head + plain).encode()), 30)]
    assert sizes == [30, 30]
    sizes = [len(c.readings) for c in csv_import._parsed_chunks(io.BytesIO((head + regs).encode()), 30)]
    assert sum(sizes) == 60 and all(9 <= n <= 12 for n in sizes[:-1]) and sizes[-1] <= 12
