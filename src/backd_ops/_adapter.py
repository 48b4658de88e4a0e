"""The transport adapter: requests' ``HTTPAdapter`` for one JSON API host, without per-call work that never applies.

The client talks to the adapter directly (no ``Session.request``). requests' adapter still does what matters:
urllib3's pool (with no retries of its own: ``BackdClient`` retries), and the translation of urllib3 failures into requests' exceptions, which
``client`` classifies once. What it skips is per-call work for features the client never uses (measured in
bench/bench_bulk.py: about a fifth of the client's CPU per call, which is what bulk runs are bound by):

- proxies: the session ignores the environment (``trust_env = False``) and passes none, so the connection pool
  is the same for every request to a host: looked up once, not per call;
- the request target is always the URL's path (no proxy wants the absolute form);
- cookies: Backd authenticates every call with Basic auth; none are read or kept.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_encoding_from_headers

__all__ = ["JsonApiAdapter"]


class JsonApiAdapter(HTTPAdapter):
    """``HTTPAdapter`` with the pool per host remembered and a lean ``Response`` (no proxies, no cookies).

    Examples
    --------
    >>> adapter = JsonApiAdapter(pool_maxsize=16, pool_block=True)
    >>> session = requests.Session(); session.mount("http://", adapter)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pools: dict[tuple[str, str, Any, Any], Any] = {}

    def get_connection_with_tls_context(self, request: requests.PreparedRequest, verify: Any,
                                        proxies: dict[str, str] | None = None, cert: Any = None) -> Any:
        if proxies:  # never from the client; anyone else gets requests' own behaviour
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        scheme, _, host = str(request.url).split("/", 3)[:3]
        key = (scheme.lower(), host.lower(), verify if isinstance(verify, (bool, str)) else id(verify), cert)
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # None: closed (the pool manager evicted or cleared it)
            pool = self._pools[key] = super().get_connection_with_tls_context(request, verify, proxies, cert)
        return pool

    def request_url(self, request: requests.PreparedRequest, proxies: dict[str, str] | None) -> str:
        return super().request_url(request, proxies) if proxies else request.path_url

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = resp.status
        response.headers = resp.headers  # urllib3's HTTPHeaderDict: case-insensitive, as requests' own
        response.encoding = get_encoding_from_headers(response.headers)  # as requests: a declared charset, or guessed
        response.raw, response.reason, response.url = resp, resp.reason, req.url
        response.request, response.connection = req, self
        return response

    def close(self) -> None:
        self._pools.clear()
        super().close()
