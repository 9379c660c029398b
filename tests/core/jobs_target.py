"""Functions the job tests enqueue (importable by dotted path, as RQ needs)."""
CALLS: list = []


def record(value):
    CALLS.append(value)
    from redis import Redis

    from core.config import get_settings
    if get_settings().redis_url:
        Redis.from_url(get_settings().redis_url).rpush("meterpay:test:calls", str(value))


def record_tick():
    record("tick")
