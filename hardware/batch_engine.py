"""The batch engine: sends batch tasks' commands, every gateway in parallel, one at a time per
gateway, giving the bus up to single commands and polls.

``drive(task_id)`` (queue "batch", started by ``core.batch.tasks.kick`` or the periodic
``core.batch.runner.sweep``) runs until the task has nothing left, and takes on every other
runnable task no engine drives (``runner.adopt``, looked for every few seconds): one engine process
then serves all running tasks, one lane per gateway carrying the commands of all of them (no two
engines wait for each other's bus lock or meter locks). ``drive_tasks(ids, shard=(k, n))`` drives
given tasks on a share of the gateways (gateway id % n == k), so n engine processes split the
buses and use more than one core (the benchmark runs two):

- *feed*: ``core.batch.runner.feed`` turns queued items into outbox commands (and posts the money
  items) in short transactions (a meter action's items in rows, each kind of row in one
  statement), keeping about ``METERPAY_BATCH_WINDOW`` commands per gateway in flight (fed when
  half of that is free), so a stop cancels all but those, and the task's progress shows as it goes;
- *lanes*: one asyncio task per gateway (on uvloop where installed) sends its commands in order on
  one connection through the executor's fenced attempt (``hardware.executor._attempt``) with the
  bus lock taken ``low`` (``hardware.buslock``): a single command or a poll round waiting for the
  bus goes next. A lane keeps the bus across its queued commands (``buslock.LowHold``: one Redis
  round trip a command instead of two) and gives it up as soon as a normal taker waits;
- *finish*: what the lanes did is finished in batches by the executor's own finish (confirmed,
  failed, or back to pending with backoff), and in the same transaction the items of the commands
  that ended follow them (``core.batch.runner.sync_locked``: no item is left ``sent``). Commands
  waiting for a retry are claimed again when due.

Claims and feeding run in the engine's thread, finishes in one of their own, while the lanes work
the wire in theirs, so the database work overlaps the serial time. The engine holds a lease on its
tasks and on its running commands (renewed as it goes); if its worker dies, the commands are
released by ``retry_due`` and the sweep starts a new engine, which resumes from the database: the
keys ``batch:<task>:<item>`` and the executor's fence make sure no item is sent or posted twice.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import uuid
from typing import Any

from sqlalchemy.exc import OperationalError

from core.batch import runner
from core.batch import settings as batch_settings
from core.jobs import job
from core.models.command import FINAL_STATES
from hardware import aio, executor, profiles, settings
from hardware.buslock import LowHold
from hardware.errors import Unsupported
from hardware.executor import Outcome, Snapshot
from hardware.transports import open_link

log = logging.getLogger(__name__)

FEED_CHUNK = 200          # items per feed transaction (short: a feed locks the meters it commands)
RETRY_CHECK = 1.0         # seconds between looks at commands waiting for a retry
SWITCH_INTERVAL = 0.001    # seconds (CPython's default 0.005)
FINISH_AFTER = 1.0        # seconds a done command may wait to be finished with others (fewer, bigger transactions)


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
        self.loop = aio.new_loop()
        self.cpu_s = 0.0  # the lanes thread's CPU seconds, once it ended
        self.thread = threading.Thread(target=self._run, daemon=True, name="batch-lanes")
        self.thread.start()
        self.queues: dict[tuple[str, str], asyncio.Queue] = {}
        self.tasks: list[asyncio.Task] = []
        self.done: list[tuple[Snapshot, Outcome]] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.first_done_at = 0.0
        self.fence = executor.LoopFence()

    def _run(self) -> None:
        try:
            self.loop.run_forever()
        finally:
            self.cpu_s = time.thread_time()

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
        hold = LowHold(url)
        try:
            while True:
                if q.empty() or not await hold.keep():
                    await hold.release()
                snap = await q.get()
                if snap is None:
                    return
                try:
                    if link is None:
                        link = open_link(url, protocol)
                    outcome = await executor._attempt(snap, link, low=True, hold=hold, fence=self.fence)
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
            try:
                await hold.release()
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
            await self.fence.close()
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@job("batch", timeout=86400)
def drive(task_id: int, *, window: int | None = None, adopt: bool = True) -> dict[str, Any]:
    """Run a task's items until none is left (or the task stops and its commands in flight end).
    ``adopt``: also drive every other runnable task no engine drives (``drive_tasks``), and leave
    alone a task another live engine already drives (it took it on; returns ``ran: False``).
    Safe to run twice at once (the items and commands are claimed with SKIP LOCKED, and keyed).
    Returns counts of what this engine did, and the seconds its database work took."""
    return drive_tasks([task_id], window=window, adopt=adopt)


class _Task:
    """One task the engine drives: is it still feeding, and is its queue (as last seen) empty."""

    def __init__(self, task_id: int):
        self.id = task_id
        self.feeding = True
        self.queue_empty = False


def drive_tasks(task_ids: list[int], *, window: int | None = None, adopt: bool = False,
                shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """One engine for several tasks: one lane per gateway carries the commands of every task on
    that bus (no engine waits for another's bus lock or meter locks), the feed shares the window
    between the tasks, one finisher ends them all. ``adopt``: every few seconds take on runnable
    tasks no engine drives (``runner.adopt``), so one engine process serves all of them.
    ``shard`` = (k, n): only the items of gateways whose id % n == k (``runner.in_shard``), so n
    engine processes split the buses between them (each bus still served by one lane, and more
    than one core at work); no adoption then."""
    if shard is not None and shard[1] > 1:
        adopt = False
    else:
        shard = None
    token = uuid.uuid4().hex
    # The lanes' thread answers every frame the meters send; the feeding and finishing threads run
    # long stretches of Python. A shorter switch interval hands the lanes the GIL sooner (less
    # idle wire between exchanges). It is process-wide: the batch queue's worker runs only this.
    sys.setswitchinterval(SWITCH_INTERVAL)
    tasks = {t: _Task(t) for t in dict.fromkeys(task_ids) if runner.begin(t, token, exclusive=adopt)}
    if adopt:
        tasks.update({t: _Task(t) for t in runner.adopt(token, set(tasks))})
    if not tasks:
        return {"task": task_ids[0] if task_ids else None, "tasks": [], "ran": False}
    per_gateway = window or batch_settings.window()
    lanes = Lanes()
    # commands an earlier engine left
    st = _State(waiting={c for t in tasks for c in runner.outstanding(t, shard)})
    st.stats["task"] = next(iter(tasks))
    finisher = threading.Thread(target=_finisher, args=(lanes, st), daemon=True, name="batch-finisher")
    finisher.start()
    gateways = max(1, runner.gateway_count(list(tasks), shard))
    last_renew = last_retry = 0.0
    turn = 0
    try:
        while True:
            now = time.monotonic()
            if now - last_renew > min(5.0, settings.command_lease() / 3):
                for tid, state in runner.renew_many(list(tasks), token).items():
                    if state != "running":
                        tasks[tid].feeding = False
                if adopt:
                    more = runner.adopt(token, set(tasks))
                    if more:
                        tasks.update({t: _Task(t) for t in more})
                        with st.lock:
                            st.waiting.update(c for t in more for c in runner.outstanding(t))
                        gateways = max(1, runner.gateway_count(list(tasks)))
                with st.lock:
                    tokens = set(st.tokens)
                if tokens:
                    executor._renew(tokens)
                last_renew = now
            active = [t for t in tasks.values() if t.feeding and not t.queue_empty]
            st.draining = not active
            cap = per_gateway * gateways
            with st.lock:  # commands still to be sent (those done and waiting to be finished are not)
                busy = len(st.inflight) - len(lanes.done) - st.finishing
            fresh: list[int] = []
            if active and cap - busy >= max(1, cap // 2):
                t0 = time.perf_counter()
                share = max(1, min(cap - busy, FEED_CHUNK) // len(active))
                for k in range(len(active)):  # a share each, the first task in turn
                    task = active[(turn + k) % len(active)]
                    try:
                        fed = runner.feed(task.id, share, shard)
                    except OperationalError:  # a deadlock with a stop or a retry: nothing was taken; again
                        log.warning("feeding batch task %s failed; trying again", task.id, exc_info=True)
                        fed = runner.Fed(taken=-1)
                    st.stats["fed"] += max(fed.taken, 0)
                    task.feeding = fed.running
                    task.queue_empty = fed.taken == 0
                    fresh += fed.command_ids
                turn += 1
                st.stats["feed_s"] += time.perf_counter() - t0
            retry: list[int] = []
            if st.waiting and now - last_retry > RETRY_CHECK:
                with st.lock:
                    retry, last_retry = sorted(st.waiting), now
            if fresh or retry:
                t0 = time.perf_counter()
                _claim(fresh + retry, lanes, st)
                st.stats["claim_s"] += time.perf_counter() - t0
            with st.lock:
                idle = not st.inflight and not st.waiting and not st.finishing and not lanes.done
            if idle and all(t.queue_empty or not t.feeding for t in tasks.values()):
                # one more look: a retry may have queued items meanwhile
                again = False
                for task in tasks.values():
                    if task.feeding and task.queue_empty and runner.feed_peek(task.id, shard):
                        task.queue_empty, again = False, True
                if again:
                    continue
                break
            if not fresh:
                lanes.wake.wait(0.05)
                lanes.wake.clear()
    finally:
        st.stop = True
        finisher.join(120)
        lanes.close()
        leftover = lanes.take_done()
        if leftover:
            _finish(leftover, st)
        for tid in tasks:
            runner.release(tid, token)
    for k in ("feed_s", "claim_s", "finish_s"):
        st.stats[k] = round(st.stats[k], 2)
    st.stats["tasks"] = sorted(tasks)
    st.stats["lanes_cpu_s"] = round(lanes.cpu_s, 2)
    st.stats["main_cpu_s"] = round(time.thread_time(), 2)
    return st.stats


class _State:
    """What the engine's threads share (under ``lock``): commands in the lanes, commands waiting for
    a retry, the lease tokens of its claims, and its counts."""

    def __init__(self, waiting: set[int]):
        self.lock = threading.Lock()
        self.inflight: set[int] = set()
        self.waiting = waiting
        self.tokens: set[str] = set()
        self.finishing = 0
        self.draining = False
        self.stop = False
        self.stats: dict[str, Any] = {"ran": True, "fed": 0, "attempts": 0, "confirmed": 0, "failed": 0,
                                      "expired": 0, "feed_s": 0.0, "claim_s": 0.0, "finish_s": 0.0, "finishes": 0}


def _finisher(lanes: Lanes, st: _State) -> None:
    """Finish what the lanes did, in batches (a quarter of what is in flight, or what waited
    ``FINISH_AFTER``), in a thread of its own: lock waits here never hold up feeding the lanes."""
    while not st.stop:
        done_n = len(lanes.done)
        if done_n and (done_n >= max(1, len(st.inflight) // 4) or st.draining
                       or time.monotonic() - lanes.first_done_at > FINISH_AFTER):
            done = lanes.take_done()
            with st.lock:
                st.finishing = len(done)
            t = time.perf_counter()
            try:
                _finish(done, st)
            except Exception:  # the commands stay running under their lease; retry_due frees them
                log.exception("finishing %s batch commands failed", len(done))
                with st.lock:
                    for snap, _o in done:
                        st.inflight.discard(snap.command_id)
            finally:
                with st.lock:
                    st.finishing = 0
            st.stats["finish_s"] += time.perf_counter() - t
            st.stats["finishes"] += 1
        else:
            time.sleep(0.02)
    st.stats["finisher_cpu_s"] = round(time.thread_time(), 2)


def _claim(ids: list[int], lanes: Lanes, st: _State) -> None:
    claimed = executor._claim(ids)
    snaps, ended = [], []
    with st.lock:
        for cid, got in claimed.items():
            if isinstance(got, Snapshot):
                st.waiting.discard(cid)
                st.inflight.add(cid)
                st.tokens.add(got.token)
                snaps.append(got)
            elif got in FINAL_STATES or got == "missing":
                st.waiting.discard(cid)
                ended.append(cid)
                if got in st.stats:
                    st.stats[got] += 1
            else:  # not-due, waiting for an older command of the meter, or another worker has it
                st.waiting.add(cid)
        st.stats["attempts"] += len(snaps)
    lanes.submit(sorted(snaps, key=lambda s: s.command_id))
    if ended:
        runner.sync_commands(ended)


def _sync_ended(s, states: dict[int, str]) -> None:
    runner.sync_locked(s, [cid for cid, state in states.items() if state in FINAL_STATES])


def _finish(done: list[tuple[Snapshot, Outcome]], st: _State) -> None:
    """The executor's finish; the items of the commands that ended follow in the same transaction."""
    snaps = [snap for snap, _o in done]
    states = executor._finish(snaps, {snap.command_id: outcome for snap, outcome in done}, after=_sync_ended)
    with st.lock:
        for snap in snaps:
            st.inflight.discard(snap.command_id)
        for cid, state in states.items():
            if state == "pending":
                st.waiting.add(cid)
            elif state in FINAL_STATES:
                st.stats[state] += 1
            # "taken": another worker owns the command now; its item follows when that one ends
