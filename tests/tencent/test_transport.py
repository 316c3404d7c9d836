"""The HTTP transport against tiny loopback servers that misbehave in one precise way each.

What is checked is the sorting of failures: ``NetworkError`` only when the request cannot have
reached the server, ``AmbiguousError`` whenever it may have.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from worker.tencent.transport import (
    AmbiguousError,
    HttpAnswer,
    HttpTransport,
    NetworkError,
    TransportError,
)

Handler = Callable[[socket.socket], None]


class RawServer:
    """Hands each loopback connection to ``handle``, one at a time, for 30 s at most."""

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v5/tlssmssvr/sendsms"
        self.accepted = 0
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        deadline = time.monotonic() + 30
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            with connection:
                connection.settimeout(5)
                with suppress(OSError):
                    self.handle(connection)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.listener.close()


def read_request(connection: socket.socket) -> bytes:
    """One HTTP request with a Content-Length body, read in bounded chunks."""
    data = b""
    for _ in range(1000):
        if b"\r\n\r\n" in data:
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(body) >= length:
                return data
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def transport() -> Iterator[HttpTransport]:
    # Generous timeouts: these tests are about how a failure is sorted, and a busy machine may
    # take seconds to schedule a server thread. A short timeout here would turn "closed before a
    # complete response" into "read timeout" on a loaded run. Only the tests that are about a
    # timeout set a short one, and there the timeout is certain to fire.
    with HttpTransport(connect_timeout=30.0, read_timeout=30.0, pool_size=8) as instance:
        yield instance


def test_listening_socket_that_never_answers_is_ambiguous() -> None:
    with (
        HttpTransport(connect_timeout=30.0, read_timeout=0.3) as transport,
        socket.create_server(("127.0.0.1", 0)) as listener,  # never accepted, never answered
    ):
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(AmbiguousError, match=r"read timeout after 0\.3s"):
            transport.post(url, b"{}")


def test_closed_port_is_a_network_error(transport: HttpTransport) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(NetworkError, match="connection refused"):
        transport.post(f"http://127.0.0.1:{port}/", b"{}")


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs on a full queue")
def test_full_accept_queue_is_a_connect_timeout() -> None:
    # With a backlog of 0, one connection waiting to be accepted fills the queue, and Linux
    # drops every further SYN: the next connect can only time out.
    with (
        HttpTransport(connect_timeout=0.3, read_timeout=0.3) as transport,
        socket.create_server(("127.0.0.1", 0), backlog=0) as listener,
        socket.create_connection(listener.getsockname(), timeout=5),
        pytest.raises(NetworkError, match=r"connect timeout after 0\.3s"),
    ):
        transport.post(f"http://127.0.0.1:{listener.getsockname()[1]}/", b"{}")


def test_close_after_reading_the_request_is_ambiguous(transport: HttpTransport) -> None:
    def read_then_close(connection: socket.socket) -> None:
        server.requests.append(read_request(connection))

    with (
        RawServer(read_then_close) as server,
        pytest.raises(AmbiguousError, match="closed before a complete response"),
    ):
        transport.post(server.url, b'{"x":1}')
    assert server.requests and server.requests[0].endswith(b'{"x":1}')
    assert server.accepted == 1  # no hidden retry


def test_reset_after_reading_the_request_is_ambiguous(transport: HttpTransport) -> None:
    def read_then_reset(connection: socket.socket) -> None:
        read_request(connection)
        # Linger on with a zero timeout: close() sends RST instead of FIN.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with (
        RawServer(read_then_reset) as server,
        pytest.raises(AmbiguousError, match="connection reset"),
    ):
        transport.post(server.url, b"{}")
    assert server.accepted == 1


def test_truncated_body_is_ambiguous(transport: HttpTransport) -> None:
    def truncated(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"result":')

    with RawServer(truncated) as server, pytest.raises(AmbiguousError, match="incomplete"):
        transport.post(server.url, b"{}")


def test_502_is_returned_not_raised(transport: HttpTransport) -> None:
    def bad_gateway(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\nConnection: close\r\n\r\n"
            b"bad gateway"
        )

    with RawServer(bad_gateway) as server:
        assert transport.post(server.url, b"{}") == HttpAnswer(502, b"bad gateway")


def test_errors_share_a_base_and_carry_safe_messages() -> None:
    assert issubclass(NetworkError, TransportError)
    assert issubclass(AmbiguousError, TransportError)
    with HttpTransport() as transport, pytest.raises(NetworkError, match="invalid URL"):
        transport.post("not a url", b"{}")


class EchoHandler(BaseHTTPRequestHandler):
    """Answers every POST with its own body, and records which connection carried it."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    connections: set[int]
    headers_seen: list[str]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.connections.add(self.client_address[1])
        self.headers_seen.append(self.headers.get("Content-Type", ""))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class BackloggedServer(ThreadingHTTPServer):
    # The default listen backlog of 5 drops the SYNs of eight threads connecting at once while
    # a busy machine has not yet run the accept loop; each dropped SYN costs a 1 s retransmit.
    request_queue_size = 64


@contextmanager
def echo_server() -> Iterator[tuple[str, type[EchoHandler]]]:
    handler = type("Echo", (EchoHandler,), {"connections": set(), "headers_seen": []})
    server = BackloggedServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/echo", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_sequential_posts_reuse_one_connection(transport: HttpTransport) -> None:
    with echo_server() as (url, handler):
        for n in range(20):
            body = f'{{"n":{n},"text":"短信"}}'.encode()
            assert transport.post(url, body) == HttpAnswer(200, body)
    assert len(handler.connections) == 1
    assert set(handler.headers_seen) == {"application/json; charset=utf-8"}


def test_threads_share_the_transport(transport: HttpTransport) -> None:
    with echo_server() as (url, handler), ThreadPoolExecutor(max_workers=8) as pool:
        bodies = [f'{{"n":{n}}}'.encode() for n in range(200)]
        answers = list(pool.map(lambda body: transport.post(url, body), bodies))
    assert [answer.body for answer in answers] == bodies
    assert all(answer.status == 200 for answer in answers)
    assert 1 <= len(handler.connections) <= 8  # bounded by the pool, not one per request
