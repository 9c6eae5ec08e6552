"""How much the probe itself adds to every latency, measured on this machine, now.

Before the run the probe sends about 200 requests (fewer at low rates: calibration lasts
about 4 s at most), in the profile's model and at its rate (or concurrency), to a loopback
endpoint of its own that answers after 20 ms and reports,
in a header, how long it really held each request. What the probe measured above that is
its own overhead: event loop, HTTP parsing, the kernel's loopback, and the loopback
server's own work, which runs on the probe's loop (so the figure is an upper bound).
The endpoint waits rather than answering at once because a no-op endpoint understates the
overhead 2.5-6 times: with requests in flight and timers firing, the loop is as busy as it
is against a real service.

The same-length placeholders stand in for header values and the body, so the requests
cost the same to build and no secret travels, even to ourselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import socket
import time
from typing import cast

from readycheck.checks.latency.load import LoadShape, Recorder, RequestSpec, run_load

SERVICE_HEADER = "X-Readycheck-Service-Us"
WAIT_S = 0.020
MAX_REQUESTS = 200
MIN_REQUESTS = 50
MAX_SECONDS = 4.0


class _WaitingEndpoint(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one request at a time per connection (the probe never pipelines):
    read a request, answer 200 after WAIT_S, report the time held in SERVICE_HEADER."""

    def __init__(self, connections: set[asyncio.Transport]) -> None:
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._body_left = 0
        self._arrived: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self._transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._connections.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if self._arrived is not None:  # reading a body
                taken = min(self._body_left, len(self._buffer))
                del self._buffer[:taken]
                self._body_left -= taken
                if self._body_left:
                    return
                arrived, self._arrived = self._arrived, None
                asyncio.get_running_loop().call_later(WAIT_S, self._answer, arrived)
                continue
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).lower()
            del self._buffer[: end + 4]
            self._arrived = time.perf_counter()
            self._body_left = _content_length(head)

    def _answer(self, arrived: float) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        held_us = round((time.perf_counter() - arrived) * 1e6)
        self._transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n%s: %d\r\n\r\n"
            % (SERVICE_HEADER.encode(), held_us)
        )


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            with contextlib.suppress(ValueError):
                return max(0, int(value.strip()))
    return 0


def calibration_requests(shape: LoadShape) -> int:
    """About 200 (4 s at the default 50/s); fewer for a short run or a low rate, so that
    calibrating takes no more than about 4 s; never under 50."""
    count = MAX_REQUESTS if shape.planned is None else shape.planned
    if shape.model == "open" and shape.rate is not None:
        count = min(count, math.ceil(shape.rate * MAX_SECONDS))
    return max(MIN_REQUESTS, min(MAX_REQUESTS, count))


def calibration_seconds(shape: LoadShape) -> float:
    """What calibration is expected to take, for fitting the run in the check's timeout."""
    count = calibration_requests(shape) + _warmup(shape)
    if shape.model == "open":
        assert shape.rate is not None
        return count / shape.rate + WAIT_S
    return count / shape.concurrency * WAIT_S


def _warmup(shape: LoadShape) -> int:
    # As the run itself warms up (connections opened, code paths hot), within reason.
    return min(shape.warmup, MAX_REQUESTS)


async def calibrate(spec: RequestSpec, shape: LoadShape, stop_at: float) -> Recorder:
    """Run the profile's load shape against the loopback endpoint; the recorder's
    ``overheads_ms`` are the per-request latencies above what the endpoint held."""
    connections: set[asyncio.Transport] = set()
    loop = asyncio.get_running_loop()
    # A backlog as large as the most connections a profile may open at once: with the
    # default (100), a closed run at concurrency 200 would wait out SYN retransmits (1 s).
    server = await loop.create_server(
        lambda: _WaitingEndpoint(connections), "127.0.0.1", 0, reuse_address=True, backlog=4096
    )
    try:
        port = server.sockets[0].getsockname()[1]
        loopback = dataclasses.replace(
            spec,
            url=f"http://127.0.0.1:{port}/readycheck-calibration",
            headers={name: "x" * len(value) for name, value in spec.headers.items()},
            body=b"x" * len(spec.body) if spec.body is not None else None,
            timeout_s=min(spec.timeout_s, 5.0),
            service_header=SERVICE_HEADER,
        )
        loopback_shape = dataclasses.replace(
            shape,
            total=calibration_requests(shape),
            duration_s=None,
            warmup=_warmup(shape),
        )
        return await run_load(loopback, loopback_shape, stop_at)
    finally:
        server.close()
        for transport in list(connections):
            transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=0.5)
