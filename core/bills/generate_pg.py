"""Bill generation on PostgreSQL, in SQL: the same bills as ``core.bills.generate``'s Python path
(which SQLite uses), made without a row per line passing through Python.

1. The rows are claimed and summed in one statement each (``UPDATE .. RETURNING`` feeding the sums),
   and the lines, split by largest remainder with window functions, go to a temporary table;
2. the bills and their lines are inserted from it with ``INSERT .. SELECT``;
3. one ``SELECT`` returns the lines the caller reports (room, kind, code, fen, bill no).

A preview runs step 1 with plain ``SELECT``s (nothing claimed) and skips step 2.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.bills.periods import Period

TMP = "bill_gen_lines"

_CREATE = f"""
CREATE TEMP TABLE {TMP} (
  account_id bigint, bill_id bigint, bill_no text, kind text, code text, name text, quantity numeric,
  amount_fen bigint, revenue_code text, meta json, o1 int, o2 int, o3 int, o4 text, o5 bigint
) ON COMMIT DROP
"""

# the id and number lists go as one comma-joined text each (no per-element adaptation of 100,000 values;
# bill numbers are B<site>-<YYYYMM>-<digits>, no comma)
_MAP = ("m AS (SELECT * FROM unnest(CAST(string_to_array(:a, ',') AS bigint[]), "
        "CAST(string_to_array(:b, ',') AS bigint[]), string_to_array(:n, ',')) AS m(account_id, bill_id, bill_no))")

_CLAIM_USAGE = """
c AS (UPDATE billed_usage AS bu SET bill_id = m.bill_id FROM m
      WHERE bu.account_id = m.account_id AND bu.billing_mode = 'postpaid' AND bu.bill_id IS NULL
        AND bu.ended_at >= :t0 AND bu.ended_at < :t1
      RETURNING bu.account_id, bu.meter_id, bu.amount_fen, bu.quantity, bu.plan_id, bu.lines),
r AS (SELECT c.account_id, mt.kind AS utility, c.amount_fen, c.quantity, c.plan_id, c.lines
      FROM c JOIN meters mt ON mt.id = c.meter_id)"""

_SEE_USAGE = """
r AS (SELECT bu.account_id, mt.kind AS utility, bu.amount_fen, bu.quantity, bu.plan_id, bu.lines
      FROM billed_usage bu JOIN meters mt ON mt.id = bu.meter_id
      WHERE bu.account_id = ANY(CAST(string_to_array(:a, ',') AS bigint[]))
        AND bu.billing_mode = 'postpaid' AND bu.bill_id IS NULL
        AND bu.ended_at >= :t0 AND bu.ended_at < :t1)"""

# part rank: TOU periods in order, then tiers, then the fixed charge and unsplit usage (as PART_ORDER)
_RANK = """CASE p.part WHEN 'sharp' THEN 0 WHEN 'peak' THEN 1 WHEN 'flat' THEN 2 WHEN 'valley' THEN 3
  WHEN 'deep_valley' THEN 4 WHEN 'fixed' THEN 900 WHEN 'all' THEN 901
  ELSE CASE WHEN p.part ~ '^tier[0-9]{1,6}$' THEN 100 + CAST(substr(p.part, 5) AS int) ELSE 500 END END"""

_NAME = """(CASE e.utility WHEN 'electricity' THEN '电费' WHEN 'water' THEN '水费' ELSE e.utility END ||
  CASE e.part WHEN 'sharp' THEN '（尖）' WHEN 'peak' THEN '（峰）' WHEN 'flat' THEN '（平）' WHEN 'valley' THEN '（谷）'
    WHEN 'deep_valley' THEN '（深谷）' WHEN 'fixed' THEN '（固定费）' WHEN 'all' THEN ''
    ELSE CASE WHEN e.part ~ '^tier[0-9]{1,6}$' THEN '（第' || substr(e.part, 5) || '阶梯）'
              ELSE '（' || e.part || '）' END
  END)"""

_ENERGY = f"""
tot AS (SELECT account_id, utility, sum(amount_fen) AS fen, sum(quantity) AS qty, count(*) AS n,
               array_remove(array_agg(DISTINCT plan_id), NULL) AS plans
        FROM r GROUP BY account_id, utility),
pl AS (SELECT r.account_id, r.utility,
              CASE WHEN coalesce(l->>'charge', '') <> '' THEN 'fixed'
                   WHEN coalesce(l->>'period', '') <> '' THEN l->>'period'
                   WHEN l->>'tier' IS NOT NULL THEN 'tier' || (l->>'tier')
                   ELSE 'all' END AS part,
              CAST(l->>'amount' AS numeric) AS amount, CAST(coalesce(l->>'quantity', '0') AS numeric) AS qty
       FROM r CROSS JOIN LATERAL json_array_elements(CASE WHEN json_typeof(r.lines) = 'array' THEN r.lines
                                                          ELSE '[]'::json END) AS l),
parts AS (SELECT account_id, utility, part, round(sum(amount) * 10000000000) AS w, sum(qty) AS qty
          FROM pl GROUP BY account_id, utility, part
          UNION ALL
          SELECT t.account_id, t.utility, 'all', 0, t.qty FROM tot t
          WHERE NOT EXISTS (SELECT 1 FROM pl WHERE pl.account_id = t.account_id AND pl.utility = t.utility)),
ranked AS (SELECT p.account_id, p.utility, p.part, p.w, p.qty, t.fen, t.n, t.plans, {_RANK} AS rk,
                  sum(GREATEST(p.w, 0)) OVER (PARTITION BY p.account_id, p.utility) AS wt
           FROM parts p JOIN tot t ON t.account_id = p.account_id AND t.utility = p.utility),
base AS (SELECT *, CASE WHEN wt > 0 AND w > 0 THEN div(fen * w, wt) ELSE 0 END AS fl,
                CASE WHEN wt > 0 AND w > 0 THEN mod(fen * w, wt) ELSE -1 END AS rem,
                row_number() OVER (PARTITION BY account_id, utility ORDER BY rk, part) AS first_rn
         FROM ranked),
lefts AS (SELECT *, fen - sum(fl) OVER (PARTITION BY account_id, utility) AS leftover,
                 row_number() OVER (PARTITION BY account_id, utility ORDER BY rem DESC, rk, part) AS rrn
          FROM base),
e AS (SELECT account_id, utility, part, rk, qty, n, plans,
             CAST(CASE WHEN wt > 0 THEN fl + CASE WHEN w > 0 AND rrn <= leftover THEN 1 ELSE 0 END
                       WHEN first_rn = 1 THEN fen ELSE 0 END AS bigint) AS fen
      FROM lefts)
INSERT INTO {TMP}
SELECT e.account_id, m.bill_id, m.bill_no, 'energy', e.utility || ':' || e.part, {_NAME},
       CASE WHEN e.part = 'fixed' THEN NULL ELSE e.qty END, e.fen, 'revenue:' || e.utility,
       json_build_object('intervals', e.n, 'plan_ids', e.plans), 0,
       CASE e.utility WHEN 'electricity' THEN 0 WHEN 'water' THEN 1 ELSE 9 END, e.rk, e.utility || ':' || e.part, 0
FROM e JOIN m ON m.account_id = e.account_id
WHERE NOT (e.fen = 0 AND (e.part = 'fixed' OR e.qty = 0))
"""

_CLAIM_ITEMS = """
ci AS (UPDATE month_items AS mi SET bill_no = m.bill_no FROM m
       WHERE mi.account_id = m.account_id AND mi.site_id = :s AND mi.period_start <= :last
         AND mi.mode = 'bill' AND mi.bill_no IS NULL
       RETURNING mi.id, mi.account_id, mi.kind, mi.code, mi.name, mi.amount_fen, mi.revenue_code, mi.source_id,
                 mi.key)"""

_SEE_ITEMS = """
ci AS (SELECT mi.id, mi.account_id, mi.kind, mi.code, mi.name, mi.amount_fen, mi.revenue_code, mi.source_id, mi.key
       FROM month_items mi
       WHERE mi.account_id = ANY(CAST(string_to_array(:a, ',') AS bigint[])) AND mi.site_id = :s
         AND mi.period_start <= :last
         AND mi.mode = 'bill' AND mi.bill_no IS NULL)"""

_ITEMS = f"""
INSERT INTO {TMP}
SELECT ci.account_id, m.bill_id, m.bill_no, CASE WHEN ci.kind = 'charge' THEN 'charge' ELSE 'apportion' END,
       ci.code, ci.name, NULL, ci.amount_fen, ci.revenue_code,
       json_build_object('item_id', ci.id, 'key', ci.key, 'source_id', ci.source_id), 1,
       CASE WHEN ci.kind = 'charge' THEN 0 ELSE 1 END, 0, ci.code, ci.id
FROM ci JOIN m ON m.account_id = ci.account_id
"""

_BILLS = f"""
INSERT INTO bills (id, bill_no, kind, site_id, account_id, period, period_start, period_end, origin_key, state,
                   total_fen, paid_fen, credited_fen, reason, created_by, created_at, notices_sent)
SELECT bill_id, bill_no, 'bill', :s, account_id, CAST(:p AS text), :first, :last,
       'gen:' || account_id || ':' || CAST(:p AS text), 'draft',
       sum(amount_fen), 0, 0, '', :actor, :now, 0
FROM {TMP} GROUP BY account_id, bill_id, bill_no
"""

_LINES = f"""
INSERT INTO bill_lines (bill_id, line_no, kind, code, name, quantity, amount_fen, revenue_code, meta)
SELECT bill_id, row_number() OVER (PARTITION BY bill_id ORDER BY o1, o2, o3, o4, o5), kind, code, name, quantity,
       amount_fen, revenue_code, meta
FROM {TMP}
"""

_REPORT = f"""
SELECT coalesce(rm.number, ''), t.kind, t.code, t.amount_fen, t.bill_no
FROM {TMP} t JOIN accounts a ON a.id = t.account_id LEFT JOIN rooms rm ON rm.id = a.room_id
ORDER BY t.bill_no, t.o1, t.o2, t.o3, t.o4, t.o5
"""


_TOTALS = f"SELECT bill_no, sum(amount_fen) FROM {TMP} GROUP BY bill_no ORDER BY bill_no"


def generate(session: Session, *, site_id: int, p: Period, t0: datetime, t1: datetime, accounts: list[int],
             bill_ids: list[int], bill_nos: list[str], preview: bool, actor: str, now: datetime,
             lines: bool = True) -> list[tuple]:
    """Steps 1-3 of the module for ``accounts`` (sorted) with their ``bill_ids`` and ``bill_nos``;
    returns ``(room, kind, code, amount_fen, bill_no)`` per line in bill and line order -- or, with
    ``lines=False`` (the scheduled month-end run, which reports no line), one ``(bill_no, total_fen)``
    per bill in number order instead of step 3."""
    if any("," in no for no in bill_nos):
        raise ValueError("a bill number with a comma")
    params: dict[str, Any] = {"a": ",".join(map(str, accounts)), "b": ",".join(map(str, bill_ids)),
                              "n": ",".join(bill_nos), "t0": t0, "t1": t1, "s": site_id,
                              "last": p.last, "first": p.first, "p": p.text, "actor": actor, "now": now}
    session.execute(text(f"DROP TABLE IF EXISTS {TMP}"))
    session.execute(text(_CREATE))
    usage = _SEE_USAGE if preview else _CLAIM_USAGE
    session.execute(text(f"WITH {_MAP},{usage},{_ENERGY}"), params)
    items = _SEE_ITEMS if preview else _CLAIM_ITEMS
    session.execute(text(f"WITH {_MAP},{items}{_ITEMS}"), params)
    if not preview:
        session.execute(text(_BILLS), params)
        session.execute(text(_LINES), params)
    rows = [tuple(r) for r in session.execute(text(_REPORT if lines else _TOTALS)).all()]
    session.execute(text(f"DROP TABLE {TMP}"))
    return rows
