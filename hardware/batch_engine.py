"""The batch engine: sends a batch task's commands, every gateway in parallel, one at a time per
gateway, giving the bus up to single commands and polls.

``drive(task_id)`` (queue "batch", started by ``core.batch.tasks.kick`` or the periodic
``core.batch.runner.sweep``) runs until the task has nothing left:

- *feed*: ``core.batch.runner.feed`` turns queued items into outbox commands (and posts the money
  items) in short transactions, keeping about ``METERPAY_BATCH_WINDOW`` commands per gateway in
  flight, so a stop cancels all but those, and the task's progress shows as it goes;
- *lanes*: one asyncio task per gateway sends its commands in order on one connection through the
  executor's fenced attempt (``hardware.executor._attempt``) with the bus lock taken ``low``
  (``hardware.buslock``): a single command or a poll round waiting for the bus goes next;
- *finish*: what the lanes did is finished in batches by the executor's own finish (confirmed,
  failed, or back to pending with backoff), then the items follow their commands
  (``core.batch.runner.sync_commands``). Commands waiting for a retry are claimed again when due.

Claims, finishes and feeding run in this thread while the lanes work the wire in theirs, so the
database work overlaps the serial time. The engine holds a lease on the task and on its running
commands (renewed as it goes); if its worker dies, the commands are released by ``retry_due`` and
the sweep starts a new engine, which resumes from the database: the keys ``batch:<task>:<item>``
and the executor's fence make sure no item is sent or posted twice.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any

from sqlalchemy.exc import OperationalError

from core.batch import runner
from core.batch import settings as batch_settings
from core.jobs import job
from core.models.command import FINAL_STATES
from hardware import executor, profiles, settings
from hardware.errors import Unsupported
from hardware.executor import Outcome, Snapshot
from hardware.transports import open_link

log = logging.getLogger(__name__)

FEED_CHUNK = 500          # items per feed transaction
RETRY_CHECK = 1.0         # seconds between looks at commands waiting for a retry


def _supports(profile: str, kind: str) -> bool:
    try:
        profiles.get(profile).supports(kind)
    except (ValueError, Unsupported):
        return False
    return True


runner.supports = _supports


class Lanes:
    """An event loop in a thread of its own; one lane (asyncio task) per gateway."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="batch-lanes")
        self.thread.start()
        self.queues: dict[tuple[str, str], asyncio.Queue] = {}
        self.tasks: list[asyncio.Task] = []
        self.done: list[tuple[Snapshot, Outcome]] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.first_done_at = 0.0

    def submit(self, snaps: list[Snapshot]) -> None:
        if snaps:
            self.loop.call_soon_threadsafe(self._put, snaps)

    def _put(self, snaps: list[Snapshot]) -> None:
        for snap in snaps:
            key = (snap.url, snap.protocol)
            q = self.queues.get(key)
            if q is None:
                q = self.queues[key] = asyncio.Queue()
                self.tasks.append(self.loop.create_task(self._lane(key, q)))
            q.put_nowait(snap)

    async def _lane(self, key: tuple[str, str], q: asyncio.Queue) -> None:
        url, protocol = key
        link = None
        try:
            while True:
                snap = await q.get()
                if snap is None:
                    return
                try:
                    if link is None:
                        link = open_link(url, protocol)
                    outcome = await executor._attempt(snap, link, low=True)
                except ValueError as exc:
                    outcome = Outcome("failed", str(exc))
                except Exception as exc:
                    log.exception("batch command %s attempt crashed", snap.command_id)
                    outcome = Outcome("retry", f"internal error: {type(exc).__name__}: {exc}")
                with self.lock:
                    if not self.done:
                        self.first_done_at = time.monotonic()
                    self.done.append((snap, outcome))
                self.wake.set()
        finally:
            if link is not None:
                await link.close()

    def take_done(self) -> list[tuple[Snapshot, Outcome]]:
        with self.lock:
            done, self.done = self.done, []
        return done

    def close(self) -> None:
        async def stop() -> None:
            for q in self.queues.values():
                q.put_nowait(None)
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@job("batch", timeout=86400)
def drive(task_id: int, *, window: int | None = None) -> dict[str, Any]:
    """Run a task's items until none is left (or the task stops and its commands in flight end).
    Safe to run twice at once (the items and commands are claimed with SKIP LOCKED, and keyed).
    Returns counts of what this engine did."""
    token = uuid.uuid4().hex
    if not runner.begin(task_id, token):
        return {"task": task_id, "ran": False}
    per_gateway = window or batch_settings.window()
    lanes = Lanes()
    inflight: set[int] = set()
    waiting: set[int] = set(runner.outstanding(task_id))  # commands an earlier engine left
    tokens: set[str] = set()
    stats: dict[str, Any] = {"task": task_id, "ran": True, "fed": 0, "attempts": 0, "confirmed": 0, "failed": 0,
                             "expired": 0, "feed_s": 0.0, "claim_s": 0.0, "finish_s": 0.0, "finishes": 0}
    feeding, queue_empty = True, False
    gateways = max(1, runner.gateway_count(task_id))
    last_renew = last_retry = 0.0
    try:
        while True:
            now = time.monotonic()
            if now - last_renew > min(5.0, settings.command_lease() / 3):
                if runner.renew(task_id, token) != "running":
                    feeding = False
                if tokens:
                    executor._renew(tokens)
                last_renew = now
            # finish in batches: a quarter of what is in flight, or what waited a quarter second
            if lanes.done and (len(lanes.done) >= max(1, len(inflight) // 4) or now - lanes.first_done_at > 0.25
                               or not feeding or queue_empty):
                t = time.perf_counter()
                _finish(lanes.take_done(), inflight, waiting, stats)
                stats["finish_s"] += time.perf_counter() - t
                stats["finishes"] += 1
            cap = per_gateway * gateways
            fresh: list[int] = []
            if feeding and not queue_empty and cap - len(inflight) >= max(1, cap // 4):
                t = time.perf_counter()
                try:
                    fed = runner.feed(task_id, min(cap - len(inflight), FEED_CHUNK))
                except OperationalError:  # a deadlock with a stop or a retry: nothing was taken; again
                    log.warning("feeding batch task %s failed; trying again", task_id, exc_info=True)
                    fed = runner.Fed(taken=-1)
                stats["fed"] += max(fed.taken, 0)
                feeding = fed.running
                queue_empty = fed.taken == 0
                fresh = fed.command_ids
                stats["feed_s"] += time.perf_counter() - t
            retry: list[int] = []
            if waiting and now - last_retry > RETRY_CHECK:
                retry, last_retry = sorted(waiting), now
            if fresh or retry:
                t = time.perf_counter()
                _claim(fresh + retry, lanes, inflight, waiting, tokens, stats)
                stats["claim_s"] += time.perf_counter() - t
            if not inflight and not waiting and (queue_empty or not feeding) and not lanes.done:
                if feeding and queue_empty:  # one more look: a retry may have queued items meanwhile
                    queue_empty = runner.feed_peek(task_id) == 0
                    if not queue_empty:
                        continue
                break
            if not fresh:
                lanes.wake.wait(0.05)
                lanes.wake.clear()
        for k in ("feed_s", "claim_s", "finish_s"):
            stats[k] = round(stats[k], 2)
    finally:
        lanes.close()
        leftover = lanes.take_done()
        if leftover:
            _finish(leftover, inflight, waiting, stats)
        runner.release(task_id, token)
    return stats


def _claim(ids: list[int], lanes: Lanes, inflight: set[int], waiting: set[int], tokens: set[str],
           stats: dict) -> None:
    claimed = executor._claim(ids)
    snaps, ended = [], []
    for cid, got in claimed.items():
        if isinstance(got, Snapshot):
            waiting.discard(cid)
            inflight.add(cid)
            tokens.add(got.token)
            snaps.append(got)
        elif got in FINAL_STATES or got == "missing":
            waiting.discard(cid)
            ended.append(cid)
            if got in stats:
                stats[got] += 1
        else:  # not-due, waiting for an older command of the meter, or another worker has it
            waiting.add(cid)
    stats["attempts"] += len(snaps)
    lanes.submit(sorted(snaps, key=lambda s: s.command_id))
    if ended:
        runner.sync_commands(ended)


def _finish(done: list[tuple[Snapshot, Outcome]], inflight: set[int], waiting: set[int], stats: dict) -> None:
    snaps = [snap for snap, _o in done]
    states = executor._finish(snaps, {snap.command_id: outcome for snap, outcome in done})
    for snap in snaps:
        inflight.discard(snap.command_id)
    ended = []
    for cid, state in states.items():
        if state == "pending":
            waiting.add(cid)
        elif state in FINAL_STATES:
            ended.append(cid)
            stats[state] += 1
        # "taken": another worker owns the command now; its item follows when that one ends (sweep)
    runner.sync_commands(ended)
