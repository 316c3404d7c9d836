"""A TCP relay between the workers and the simulator that can make the gateway unreachable.

``cut()`` closes the listening socket, so a new connection is refused (a request that never
left), and closes every open connection, so a request in the air at that moment gets no answer
(one that may have arrived). ``restore()`` listens on the same port again. The simulator keeps
its state throughout: the audit still sees every request that reached it.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress
from types import TracebackType

from tests.chaos.servers import free_port

ACCEPT_POLL_SECONDS = 0.2
CONNECT_TIMEOUT_SECONDS = 5.0
JOIN_TIMEOUT_SECONDS = 5.0
BUFFER_BYTES = 65536


class GatewayProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.cuts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def reachable(self) -> bool:
        return self._listener is not None

    def restore(self) -> None:
        """Listen (again) on the proxy's port."""
        assert self._listener is None, "the proxy is already listening"
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The port was ours a moment ago; its old connections may linger in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(ACCEPT_POLL_SECONDS)
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), name="gateway-proxy", daemon=True
        )
        self._acceptor.start()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._acceptor is not None:
            self._acceptor.join(JOIN_TIMEOUT_SECONDS)
            self._acceptor = None
        with self._lock:
            dropped, self._open = list(self._open), set()
        for sock in dropped:
            _close(sock)
        self.cuts += 1

    def _accept(self, listener: socket.socket) -> None:
        # Ends when cut() closes the listener (accept then raises OSError).
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, CONNECT_TIMEOUT_SECONDS)
            except OSError:
                _close(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, target), name="gateway-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        """Copy bytes one way until either side closes; then close both."""
        try:
            while data := source.recv(BUFFER_BYTES):
                target.sendall(data)
        except OSError:
            pass  # cut, or reset by the other side: the connection is over either way
        finally:
            with self._lock:
                self._open.difference_update((source, target))
            _close(source)
            _close(target)

    def __enter__(self) -> GatewayProxy:
        self.restore()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cut()


def _close(sock: socket.socket) -> None:
    with suppress(OSError):  # already closed by the other side
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
