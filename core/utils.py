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


def keepalive_pool(base_url: str, pool_size: int = 32):
    """A bare ``urllib3`` pool for one API base, kept and shared by a process's threads, for the
    hot calls where ``requests``'s per-call work (merging settings, hooks, cookies, the response
    object) cost more CPU than the call itself (the mini-program login: ~1 ms a login).

    Same connection rules as ``keepalive_http_session``: the proxy (``HTTP(S)_PROXY``,
    ``NO_PROXY``) and CA-bundle environment (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, else
    certifi's) are read once, here; connections stay open between calls. Pass ``RETRY_IDLE_GET``
    as ``retries`` for a GET: tried once more on a connection the server closed while idle.
    """
    import os

    import urllib3
    from requests.utils import get_environ_proxies
    ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if not ca:
        import certifi
        ca = certifi.where()
    scheme = base_url.split(":", 1)[0].lower()
    proxy = get_environ_proxies(base_url).get(scheme) or get_environ_proxies(base_url).get("all")
    options = {"num_pools": 4, "maxsize": pool_size, "block": False, "retries": False, "ca_certs": ca,
               "cert_reqs": "CERT_REQUIRED"}
    if proxy:
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


def _retry_idle_get():
    from urllib3.util.retry import Retry
    return Retry(total=1, connect=1, read=1, redirect=0, status=0, other=0, raise_on_status=False)


RETRY_IDLE_GET = _retry_idle_get()


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
