"""The probe's HTTP/1.1 client: a keep-alive pool of plain asyncio protocols.

Why a client of our own: the probe must cost little enough per request that what it
reports is the server's time, and sustain 10,000 requests/s on one core (issue 6).
Measured by ``benchmarks/latency_accuracy.py`` on the 2-core VM (client and server each on
one core, a trivial endpoint, closed loop at concurrency 50, uvloop), CPU per request:

    aiohttp 3.9, 3.11 and 3.14 ClientSession     120-210 us   4,600-8,500 requests/s
    this client, no probe around it              27 us        35,000/s (the server's ceiling)

httpx is out for another reason: its pool does work quadratic in the requests waiting
for a connection (encode/httpx#3215, encode/httpcore#1035); at concurrency 50 it reported
p95 0.6-1 s above the true 25 ms. aiohttp was the plan; on this machine its per-request
CPU alone kept the probe under 10,000/s and added a millisecond or more to a 20 ms p95.
What a latency probe needs of HTTP is small (one request, sent again and again; the
answer's status and where it ends), so the hot path is a write, a parse of the head and
a count of the body.

What it does: HTTP/1.1 with keep-alive; one request at a time on a connection (no
pipelining), at most ``limit`` connections; TLS with the context the HTTP checks share
(``checks/http/certificates.py``: the system's trust store or ``ca_file``); the host
name resolved once per run; bodies framed by Content-Length, chunked transfer coding or
the connection's close, counted and thrown away (never decompressed: decoding would time
our CPU, not the server); interim 1xx answers skipped; redirects not followed (a 3xx is
an answer). Limits: a head of at most 64 KiB, a body of at most ``max_body_bytes``. A
client made with ``keep`` keeps each answer's head and the first ``keep`` bytes of its
body (the preflight request shows them); the load's clients keep nothing. A
request on a reused connection that the server had closed before any byte of the answer
(a keep-alive race) is sent once more on a new connection when its method is
idempotent, as browsers do; its latency still runs from its start.

Every failure is one of: ``TimeoutError``; ``BodyTooLarge``; ``ProbeError`` whose
``reason`` is a short phrase of our own (library and OS messages may carry the URL).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import math
import os
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple, cast
from urllib.parse import quote, unquote, urlsplit

MAX_HEAD_BYTES = 64 * 1024
MAX_CHUNK_LINE_BYTES = 4 * 1024
# How often requests are checked against their timeout: a timeout is seen this much late
# at most, and the time counted for it is the time it really waited.
SWEEP_S = 0.01
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Headers the client frames itself: a profile's value would contradict the body it sends.
_FRAMING = frozenset({"content-length", "transfer-encoding"})

# Where the parser is in the current answer.
_IDLE, _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE = range(8)


class ProbeError(Exception):
    """A request failed, for ``reason``: a short phrase of our own, no URL, no header."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BodyTooLarge(ProbeError):
    def __init__(self) -> None:
        super().__init__("response body over max_body")


class _ClosedBeforeAnswer(ProbeError):
    """The server closed the connection before sending any byte of the answer."""

    def __init__(self) -> None:
        super().__init__("server closed the connection")


class Answer(NamedTuple):
    status: int
    ended: float
    """``time.perf_counter()`` when the answer's last byte was read."""
    service_header: bytes | None = None
    """The value of the header asked for with ``service_header``, if the answer had it."""
    head: bytes | None = None
    """The answer's head as received (status line and headers), with ``keep`` only."""
    body: bytes | None = None
    """The first ``keep`` bytes of the body as received (not decoded), with ``keep`` only."""


@dataclass(frozen=True)
class Target:
    """Where every request of a run goes, and the bytes of the request itself."""

    host: str
    port: int
    tls: ssl.SSLContext | None
    request: bytes
    head_only: bool
    idempotent: bool

    @classmethod
    def build(
        cls,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        tls: ssl.SSLContext | None,
    ) -> Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ProbeError("invalid URL")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
            host = parts.hostname.encode("idna").decode("ascii")
        except (ValueError, UnicodeError):
            raise ProbeError("invalid URL") from None
        if scheme == "http":
            tls = None
        elif tls is None:  # the system's trust store
            tls = ssl.create_default_context()
        shown_host = f"[{host}]" if ":" in host else host
        if port != (443 if scheme == "https" else 80):
            shown_host = f"{shown_host}:{port}"
        path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
        given = {name.lower() for name in headers}
        lines = [f"{method} {path} HTTP/1.1"]
        if "host" not in given:
            lines.append(f"Host: {shown_host}")
        lines += [
            f"{name}: {value}" for name, value in headers.items() if name.lower() not in _FRAMING
        ]
        if parts.username is not None and "authorization" not in given:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            lines.append("Authorization: Basic " + base64.b64encode(pair.encode()).decode())
        if "accept" not in given:
            lines.append("Accept: */*")
        if "accept-encoding" not in given:
            # As a browser asks; the answer is counted, not decoded.
            lines.append("Accept-Encoding: gzip, deflate")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        elif method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        try:
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        except UnicodeEncodeError:
            raise ProbeError("invalid request header") from None
        return cls(
            host=host,
            port=port,
            tls=tls,
            request=head + (body or b""),
            head_only=method == "HEAD",
            idempotent=method in _IDEMPOTENT,
        )


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses the answers to the requests written on it."""

    def __init__(self, max_body: int, service_header: bytes | None, keep: int = 0) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False  # an answer has come on it before
        self.reusable = True
        self._max_body = max_body
        self._service_header = service_header
        self._waiter: asyncio.Future[Answer] | None = None
        self.expires = math.inf  # the loop's clock; the client's sweep enforces it
        self._buffer = bytearray()
        self._state = _IDLE
        self._head_only = False
        self._status = 0
        self._service: bytes | None = None
        self._left = 0  # body bytes still due (Content-Length, or the current chunk)
        self._body = 0  # body bytes read so far
        self._got_bytes = False  # any byte of the current answer
        self._keep = keep
        self._kept_head = b""
        self._kept: bytearray | None = bytearray() if keep else None

    # -- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None:
            return
        if self._state == _UNTIL_CLOSE:
            self._complete()
        elif not self._got_bytes:
            self._fail(_ClosedBeforeAnswer())
        elif self._state == _HEAD:
            self._fail(ProbeError("server closed the connection"))
        else:
            self._fail(ProbeError("response body cut short"))

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for: the connection's framing can no longer be trusted.
            self._discard()
            return
        self._got_bytes = True
        buffer = self._buffer
        try:
            if not buffer and self._state == _HEAD:
                # The usual case, and the hot path: the whole head (often the whole answer)
                # in one read, parsed without copying it into the buffer first.
                end = data.find(b"\r\n\r\n")
                if 0 <= end <= MAX_HEAD_BYTES:
                    self._head(data[:end])
                    rest = len(data) - end - 4
                    if self._state == _LENGTH and rest == self._left:
                        if self._kept is not None:
                            self._keep_body(data[end + 4 :])
                        self._body = rest
                        self._complete()
                        return
                    if not rest:
                        return
                    data = data[end + 4 :]
            buffer += data
            while buffer and self._waiter is not None:
                if not self._step(buffer):
                    return
        except ProbeError as exc:
            self._fail(exc)
            return
        if buffer:  # more than the answer: nothing sane can follow on this connection
            buffer.clear()
            self._discard()

    # -- one exchange --------------------------------------------------------------------

    def exchange(self, request: bytes, head_only: bool, expires: float) -> asyncio.Future[Answer]:
        """Write the request; the future is the answer, or TimeoutError once ``expires``
        (the loop's clock) has passed and the client's sweep sees it."""
        assert self.transport is not None
        assert self._waiter is None
        waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._state = _HEAD
        self._head_only = head_only
        self._service = None
        self._body = 0
        self._got_bytes = False
        if self._kept is not None:
            self._kept_head = b""
            self._kept.clear()
        self.expires = expires
        self.transport.write(request)
        return waiter

    @property
    def busy(self) -> bool:
        return self._waiter is not None

    def expire(self) -> None:
        self._fail(TimeoutError())

    def _complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        self._state = _IDLE
        self.expires = math.inf
        self.reused = True
        if waiter is None or waiter.done():
            return
        if self._kept is None:
            waiter.set_result(Answer(self._status, time.perf_counter(), self._service))
        else:
            waiter.set_result(
                Answer(
                    self._status,
                    time.perf_counter(),
                    self._service,
                    self._kept_head,
                    bytes(self._kept),
                )
            )

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        self.expires = math.inf
        self._discard()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _discard(self) -> None:
        self.reusable = False
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- the parser ----------------------------------------------------------------------

    def _step(self, buffer: bytearray) -> bool:
        """Parse what the buffer holds for the current state; False: wait for more."""
        state = self._state
        if state == _HEAD:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise ProbeError("response head over 64 KiB")
                return False
            if end > MAX_HEAD_BYTES:
                raise ProbeError("response head over 64 KiB")
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            self._head(head)
        elif state in (_LENGTH, _CHUNK_DATA):
            taken = min(self._left, len(buffer))
            if self._kept is not None:
                self._keep_body(buffer[:taken])
            del buffer[:taken]
            self._left -= taken
            self._count(taken)
            if self._left == 0:
                if state == _LENGTH:
                    self._complete()
                else:
                    self._state = _CHUNK_END
        elif state == _CHUNK_SIZE:
            line = _take_line(buffer, MAX_CHUNK_LINE_BYTES, "invalid HTTP response")
            if line is None:
                return False
            size = _chunk_size(line)
            if size == 0:
                self._state = _TRAILER
            else:
                self._left = size
                self._state = _CHUNK_DATA
        elif state == _CHUNK_END:
            if len(buffer) < 2:
                return False
            if buffer[:2] != b"\r\n":
                raise ProbeError("invalid HTTP response")
            del buffer[:2]
            self._state = _CHUNK_SIZE
        elif state == _TRAILER:
            line = _take_line(buffer, MAX_HEAD_BYTES, "response head over 64 KiB")
            if line is None:
                return False
            if not line:  # the empty line that ends the trailers
                self._complete()
        else:  # _UNTIL_CLOSE
            if self._kept is not None:
                self._keep_body(buffer)
            self._count(len(buffer))
            buffer.clear()
        return True

    def _keep_body(self, data: bytes | bytearray) -> None:
        assert self._kept is not None
        room = self._keep - len(self._kept)
        if room > 0:
            self._kept += data[:room]

    def _count(self, taken: int) -> None:
        self._body += taken
        if self._body > self._max_body:
            raise BodyTooLarge

    def _head(self, head: bytes) -> None:
        lines = head.lower().split(b"\r\n")  # names are case-blind; values read are too
        status_line = lines[0]
        if (
            len(status_line) < 12
            or not status_line.startswith(b"http/1.")
            or status_line[8] != 32  # b" "
            or not status_line[9:12].isdigit()
            or (len(status_line) > 12 and status_line[12] != 32)
        ):
            raise ProbeError("invalid HTTP response")
        status = int(status_line[9:12])
        keep_alive = status_line[7] == 49  # b"1": HTTP/1.1 keeps the connection by default
        length: int | None = None
        chunked = coded = False
        wanted = self._service_header
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1] in (32, 9):  # no space before the colon
                raise ProbeError("invalid HTTP response")
            if name == b"content-length":
                for item in value.split(b","):
                    item = item.strip()
                    if not item.isdigit() or (length is not None and int(item) != length):
                        raise ProbeError("invalid HTTP response")
                    length = int(item)
            elif name == b"transfer-encoding":
                coded = True
                chunked = value.rstrip().endswith(b"chunked")
            elif name == b"connection":
                tokens = {token.strip() for token in value.split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
            elif name == wanted:
                self._service = value.strip()
        if status < 200:
            if status == 101:
                raise ProbeError("unexpected protocol switch")
            if status < 100:
                raise ProbeError("invalid HTTP response")
            return  # an interim answer (100, 103): the real one follows
        self._status = status
        if self._kept is not None:
            self._kept_head = head
        if not keep_alive:
            self.reusable = False
        if self._head_only or status == 204 or status == 304:
            self._complete()
        elif coded:
            # Transfer-Encoding wins over Content-Length; sent together, the connection is
            # not trusted for another request (RFC 9112, section 6.3).
            if length is not None:
                self.reusable = False
            if chunked:
                self._state = _CHUNK_SIZE
            else:
                self._state = _UNTIL_CLOSE
                self.reusable = False
        elif length is not None:
            if length > self._max_body:
                raise BodyTooLarge
            if length == 0:
                self._complete()
            else:
                self._left = length
                self._state = _LENGTH
        else:
            self._state = _UNTIL_CLOSE
            self.reusable = False


def _take_line(buffer: bytearray, limit: int, too_long: str) -> bytes | None:
    """The next CRLF-ended line, taken out of the buffer; None until it has all come."""
    end = buffer.find(b"\r\n")
    if end < 0:
        if len(buffer) > limit:
            raise ProbeError(too_long)
        return None
    line = bytes(buffer[:end])
    del buffer[: end + 2]
    return line


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()
    if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
        raise ProbeError("invalid HTTP response")
    return int(digits, 16)


class Client:
    """At most ``limit`` keep-alive connections to one target; requests wait their turn."""

    def __init__(
        self,
        target: Target,
        limit: int,
        max_body: int,
        service_header: str | None = None,
        keep: int = 0,
    ) -> None:
        self.target = target
        self._keep = keep
        self._limit = limit
        self._max_body = max_body
        self._service_header = service_header.lower().encode() if service_header else None
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._slots = 0  # connections open or opening, and slots handed to waiters
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._addresses: list[tuple[int, str]] | None = None
        self._closed = False
        self._sweep: asyncio.TimerHandle | None = None

    async def request(self, timeout_s: float) -> Answer:
        """Send the target's request once; the answer, or one of the module's failures."""
        loop = asyncio.get_running_loop()
        expires = loop.time() + timeout_s
        if self._sweep is None and not self._closed:
            self._sweep = loop.call_later(SWEEP_S, self._time_out_requests)
        target = self.target
        idle = self._idle
        for attempt in (1, 2):
            if idle and not idle[-1].closed:
                connection = idle.pop()  # the hot path: a warm connection is free
            else:
                connection = await self._acquire(expires)
            try:
                answer = await connection.exchange(target.request, target.head_only, expires)
            except _ClosedBeforeAnswer:
                self._release(connection)
                if attempt == 1 and connection.reused and target.idempotent:
                    continue  # a keep-alive race, not the server failing the request
                raise ProbeError("server closed the connection") from None
            except BaseException:
                connection._fail(ProbeError("request abandoned"))  # cancelled, timed out
                self._release(connection)
                raise
            self._release(connection)
            return answer
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Abort every connection and wake every waiter; the client is done."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
        for connection in list(self._all):
            connection._fail(ProbeError("client closed"))
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ProbeError("client closed"))

    def _time_out_requests(self) -> None:
        """Fail every request past its time. One sweep every SWEEP_S rather than a timer
        per request: arming and cancelling one costs about 10% of a request's CPU here."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in list(self._all):
            if connection.expires <= now:
                connection.expire()
        self._sweep = None if self._closed else loop.call_later(SWEEP_S, self._time_out_requests)

    # -- the pool ------------------------------------------------------------------------

    async def _acquire(self, expires: float) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._forget(connection)
        if self._closed:
            raise ProbeError("client closed")
        if self._slots < self._limit:
            self._slots += 1
            return await self._open(expires)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(expires, _time_out, waiter)
        try:
            given = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(waiter.result())  # handed over, then cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()
        if given is not None:
            return given
        return await self._open(expires)  # a slot was handed over: open a connection in it

    async def _open(self, expires: float) -> _Connection:
        """Open a connection in a slot already counted; the slot is freed on failure."""
        try:
            async with asyncio.timeout_at(expires):
                connection = await self._connect()
        except BaseException:
            self._free_slot()
            raise
        self._all.add(connection)
        return connection

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        target = self.target
        if self._addresses is None:
            try:
                infos = await loop.getaddrinfo(
                    target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
            except socket.gaierror:
                raise ProbeError("host name not resolved") from None
            self._addresses = [(info[0], str(info[4][0])) for info in infos]
        if not self._addresses:
            raise ProbeError("host name not resolved")
        failure: OSError | None = None
        for position, (family, address) in enumerate(self._addresses):
            try:
                _, protocol = await loop.create_connection(
                    lambda: _Connection(self._max_body, self._service_header, self._keep),
                    address,
                    target.port,
                    family=family,
                    ssl=target.tls,
                    server_hostname=target.host if target.tls is not None else None,
                )
            except ssl.SSLCertVerificationError:
                raise ProbeError("TLS certificate rejected") from None
            except ssl.SSLError:
                raise ProbeError("TLS handshake failed") from None
            except TimeoutError:
                raise
            except OSError as exc:
                failure = failure or exc
                continue
            if position:  # "localhost" as ::1 first, served on 127.0.0.1: try that first
                self._addresses.insert(0, self._addresses.pop(position))
            return protocol
        raise ProbeError(os_reason(failure))

    def _release(self, connection: _Connection) -> None:
        if connection.closed or not connection.reusable or self._closed:
            connection._discard()
            self._forget(connection)
            return
        self._give_back(connection)

    def _give_back(self, given: _Connection | None) -> None:
        """A connection (or a free slot: None) goes to the first waiter, else back."""
        if given is not None and (given.closed or not given.reusable):
            self._forget(given)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(given)
                return
        if given is None:
            self._slots -= 1
        else:
            self._idle.append(given)

    def _forget(self, connection: _Connection) -> None:
        if connection in self._all:
            self._all.discard(connection)
            self._free_slot()

    def _free_slot(self) -> None:
        self._slots -= 1
        if self._waiters and not self._closed:
            self._slots += 1
            self._give_back(None)


def _time_out(waiter: asyncio.Future[_Connection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def os_reason(exc: BaseException | None) -> str:
    """A short reason of our own wording for a failed connection."""
    number = getattr(exc, "errno", None)
    if isinstance(number, int) and number in errno.errorcode:
        return os.strerror(number).lower()
    return "could not connect"
