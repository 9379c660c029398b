"""Small helpers with no domain meaning."""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from core.db import utcnow  # noqa: F401  (re-exported)


def site_tz(name: str | None = None) -> ZoneInfo:
    from core.config import get_settings
    return ZoneInfo(name or get_settings().timezone)


def aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: give a timezone")
    return dt.astimezone(UTC)


def keepalive_http_session(base_url: str, pool_size: int = 32):
    """A ``requests.Session`` for one API base, to be kept and shared by a process's threads: its
    connections stay open between calls (no TCP, TLS handshake per call).

    The proxy and CA-bundle environment (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``...)
    is read once, here, instead of on every request (requests scans the environment, and the
    system's proxy settings, per call when ``trust_env`` is on); ``~/.netrc`` is not used.
    A GET that fails on a connection the server closed while it was idle is retried once.
    """
    import os

    import requests
    from requests.adapters import HTTPAdapter
    from requests.utils import get_environ_proxies
    from urllib3.util.retry import Retry

    session = requests.Session()
    session.trust_env = False
    session.proxies.update(get_environ_proxies(base_url))
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    # A kept-alive connection the server closed meanwhile fails the next request on it: a GET
    # (idempotent: code2session, tokens) is tried once more on a new connection; a POST never is.
    retry = Retry(total=1, connect=1, read=1, redirect=0, status=0, other=0, raise_on_status=False)
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
