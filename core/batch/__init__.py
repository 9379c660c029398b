"""Batch tasks (批量操作任务): one action over many rooms, now or at a set time.

- ``actions``: what each action needs (params, confirmation, the meter command it becomes).
- ``selection``: which rooms (site, buildings, floors, a room list or file, a monitor status),
  frozen into items when the task is created.
- ``tasks``: create, confirm, run early, cancel or stop, retry, show.
- ``runner``: turns queued items into outbox commands and journal entries under
  ``batch:<task id>:<item>``, keeps item states in step with their commands, and the periodic sweep.

The engine that sends a task's commands is ``hardware.batch_engine`` (queue "batch").
"""
