"""A rate-limited HTTP server on 127.0.0.1 for the tests of http.rate_limit.

``FixedWindowLimiter`` is a script for tests.servers.http's ScriptedServer (raw HTTP/1.1
on a real socket, keep-alive): it answers 200 to at most ``limit`` requests per window of
``window_s`` seconds, counted from the window's first request, and 429 to the rest, with
``Retry-After`` (whole seconds until the window ends, rounded up) and the draft's
``RateLimit-Limit``/``-Remaining``/``-Reset`` headers. Variations, by keyword:

    limit=None          never throttles
    headers=False       429 without any rate-limit header
    lockout_s=N         once throttled, 429 for N seconds, saying Retry-After: N
    stuck=True          once throttled, 429 for ever, while saying Retry-After: 1
    fail_after=N        503 (a server error, not throttling) from request N+1 on

Fixture ``rate_limited`` (function scope): factory of started servers, stopped after the
test. ``server.requests`` lists the requests that arrived, in order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest

from tests.servers.http import Reply, ScriptedServer, Serve, ok


class FixedWindowLimiter:
    def __init__(
        self,
        limit: int | None,
        window_s: float = 1.0,
        *,
        headers: bool = True,
        lockout_s: float | None = None,
        stuck: bool = False,
        fail_after: int | None = None,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.headers = headers
        self.lockout_s = lockout_s
        self.stuck = stuck
        self.fail_after = fail_after
        self.window_start: float | None = None
        self.count = 0
        self.seen = 0
        self.blocked_until: float | None = None

    def __call__(self, request: bytes, connection: int, index: int) -> Reply:
        now = time.monotonic()
        self.seen += 1
        if self.fail_after is not None and self.seen > self.fail_after:
            return Reply(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
        if self.blocked_until is not None:
            if now < self.blocked_until:
                wait_s = 1 if self.stuck else math.ceil(self.blocked_until - now)
                return self._throttled(wait_s, 0)
            self.blocked_until = None
        if self.window_start is None or now >= self.window_start + self.window_s:
            self.window_start, self.count = now, 0
        self.count += 1
        if self.limit is None or self.count <= self.limit:
            remaining = b"" if self.limit is None else b"%d" % (self.limit - self.count)
            extra = (
                [b"RateLimit-Limit: %d" % self.limit, b"RateLimit-Remaining: " + remaining]
                if self.headers and self.limit is not None
                else []
            )
            return Reply(ok(b"ok", *extra))
        if self.stuck:
            self.blocked_until = math.inf
            return self._throttled(1, self.limit)
        if self.lockout_s is not None:
            self.blocked_until = now + self.lockout_s
            return self._throttled(math.ceil(self.lockout_s), self.limit)
        return self._throttled(math.ceil(self.window_start + self.window_s - now), self.limit)

    def _throttled(self, wait_s: int, limit: int) -> Reply:
        wait_s = max(wait_s, 1)
        head = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 17\r\n"
        if self.headers:
            head += (
                b"Retry-After: %d\r\nRateLimit-Limit: %d\r\nRateLimit-Remaining: 0\r\n"
                b"RateLimit-Reset: %d\r\n" % (wait_s, limit, wait_s)
            )
        return Reply(head + b"\r\ntoo many requests")


RateLimited = Callable[..., ScriptedServer]


@pytest.fixture
def rate_limited(serve: Serve) -> RateLimited:
    """Start a server answering as `FixedWindowLimiter(*args, **kwargs)`; stopped after
    the test (by `serve`)."""
    return lambda *args, **kwargs: serve(FixedWindowLimiter(*args, **kwargs))
