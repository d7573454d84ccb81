"""The emulator served: one client at a time on a TCP socket, or whoever opens the pty.

A newcomer is refused NAK BUSY while the client being served is working; one that stays silent
for ``IDLE_TIMEOUT`` gives way to a newcomer. What a client's frames do is
:class:`emulator.protocol.Emulator`'s business; the bytes travel over :mod:`emulator.links`.
"""

from __future__ import annotations

import queue
import select
import socket
import threading
from time import monotonic

from control import wire
from control.wire import Cmd, Nak
from emulator import clock
from emulator.links import LinkClosed, PtyLink, SocketLink
from emulator.protocol import Emulator

#: How long a new client waits for the previous one to leave before it is refused BUSY, s.
BUSY_GRACE = 1.0
#: Longest a refused (BUSY) connection is kept open for the client to read its NAK, s.
LINGER = 1.0
#: A connected client that has sent nothing for this long gives way to a newcomer, s.
IDLE_TIMEOUT = 30.0


class Server:
    """Serves an :class:`Emulator` to one client at a time; a second concurrent client gets BUSY.

    Takeover rule: a newcomer is refused BUSY while the client being served is working (a command
    executing, or sent within ``IDLE_TIMEOUT`` s). A client that has been silent for longer gives
    way: it is sent NAK BUSY (SEQ 0) saying so, its link is closed, and the newcomer is served.
    Nobody is ever cut off mid-command, and a lone idle client keeps the instrument for as long
    as it likes.

    Args:
        emulator: the instrument to serve.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.stop_event = threading.Event()
        self._listener: socket.socket | None = None
        self._busy = threading.Event()
        self._clients: queue.Queue = queue.Queue()
        self._current: SocketLink | None = None
        self._evict = threading.Event()
        self._acceptor: threading.Thread | None = None
        self.pty: PtyLink | None = None

    def listen_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Bind and listen; return the (host, port) bound (port 0 picks a free one)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(socket.SOMAXCONN)  # a connect storm queues instead of being dropped (1 s SYN retry)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        address = listener.getsockname()[:2]
        self.emulator.url = f"socket://{address[0]}:{address[1]}"
        self._acceptor = threading.Thread(target=self._accept, name="emulator-accept", daemon=True)
        self._acceptor.start()
        return address

    def open_pty(self) -> str:
        """Open a pseudo-terminal; return the path clients open as a serial port."""
        self.pty = PtyLink()
        self.emulator.url = self.pty.path
        return self.pty.path

    def _accept(self) -> None:
        while not self.stop_event.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], clock.POLL)
                if not ready:
                    continue
                sock, _ = self._listener.accept()
            except OSError:
                return
            why = self._why_busy() if self._busy.is_set() else ""
            if why:
                threading.Thread(target=self._refuse, args=(sock, why), name="emulator-busy", daemon=True).start()
            else:
                self._busy.set()
                self._clients.put(sock)

    @staticmethod
    def _refuse(sock: socket.socket, why: str) -> None:
        """Answer NAK BUSY and close gracefully.

        Closing at once can lose the NAK: the client's IDENTIFY arriving at a closed socket makes
        the kernel send a reset, which discards the unread NAK on the client's side, and pyserial
        drops bytes read in the same call as an end of stream. So: send, then keep the socket open
        until the client, having read the NAK, closes it (at most LINGER s).
        """
        link = SocketLink(sock)
        try:
            link.write(wire.encode(Cmd.NAK, 0, wire.pack_nak(Nak.BUSY, 0, f"BUSY: {why}")))
            deadline = monotonic() + LINGER
            while monotonic() < deadline:
                ready, _, _ = select.select([sock], [], [], clock.POLL)
                if ready and not sock.recv(4096):
                    break
        except (LinkClosed, OSError):
            pass
        finally:
            link.close()

    def _why_busy(self) -> str:
        """Why a newcomer must be refused now ("" to serve it), decided within ``BUSY_GRACE`` s.

        A client still connected with nothing unread is there: refused, unless it has been idle
        for ``IDLE_TIMEOUT`` s (then it is evicted and the newcomer served). One that closed right
        after sending has bytes unread until the server gets to them; a successor that connects
        meanwhile (a reconnect) must not be refused BUSY for that. A command still executing
        for a client that has left keeps the instrument busy until it ends.
        """
        why = (f"another client is connected; the emulator serves one client at a time (one idle for "
               f"{IDLE_TIMEOUT:g} s gives way)")
        deadline = monotonic() + BUSY_GRACE
        while monotonic() < deadline and not self.stop_event.is_set():
            current = self._current
            if not self._busy.is_set():
                return "" if self._clients.empty() else why
            state = current.peer_state() if current is not None else "pending"
            if state == "gone":
                if not self._clients.empty():
                    return why
                if not self.emulator.executing:
                    return ""
                why = "the instrument is still executing the command of a client that has left; try again later"
            elif state == "idle":
                idle = monotonic() - self.emulator.last_heard
                if self.emulator.executing or idle < IDLE_TIMEOUT or not self._clients.empty():
                    return why
                return self._evict_idle(current, why)
            self.stop_event.wait(clock.POLL / 10)  # the previous client is leaving: look again soon
        return why

    def _evict_idle(self, current: SocketLink, why: str) -> str:
        """Have the serving loop tell the idle ``current`` client and drop it; "" once it is gone."""
        self._evict.set()  # serve() sends the notice and returns within POLL s
        deadline = monotonic() + BUSY_GRACE
        while self._current is current and monotonic() < deadline:
            self.stop_event.wait(clock.POLL / 5)
        return "" if self._current is not current else why

    def _eviction(self) -> str:
        """Why the client being served must give way now ("" while it may stay); asked by serve()."""
        if not self._evict.is_set():
            return ""
        return (f"BUSY: this client was idle for more than {IDLE_TIMEOUT:g} s and another client took the "
                "instrument; reconnect when it is free")

    def serve_forever(self) -> None:
        """Serve clients one after another until :meth:`shutdown`."""
        if self.pty is not None:
            try:
                self.emulator.serve(self.pty, self.stop_event)
            finally:
                self.pty.close()
            return
        while not self.stop_event.is_set():
            try:
                sock = self._clients.get(timeout=clock.POLL)
            except queue.Empty:
                continue
            self._busy.set()
            self._evict.clear()
            link = self._current = SocketLink(sock)
            try:
                self.emulator.serve(link, self.stop_event, self._eviction)
            finally:
                self._current = None
                if self._clients.empty():
                    self._busy.clear()  # before closing: a client reconnecting at once must not see BUSY
                link.close()

    def shutdown(self) -> None:
        """Stop serving and release the socket or pty."""
        self.stop_event.set()  # serve_forever notices within POLL s and closes a pty itself
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)  # it stops within POLL s; then the port is free again
        if self._listener is not None:
            self._listener.close()
        current = self._current
        if current is not None:
            current.close()  # unblocks a write to a client that stopped reading
        while not self._clients.empty():
            self._clients.get_nowait().close()
