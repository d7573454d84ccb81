"""The links a client reaches the emulator by: a TCP socket or a pseudo-terminal.

A link moves bytes and nothing else; it knows no frames. No call waits longer than asked: a
read returns what arrived within its timeout, and a write to a client that takes nothing for
``WRITE_TIMEOUT`` s fails with :class:`LinkClosed` instead of blocking the server.
"""

from __future__ import annotations

import os
import select
import socket
import tty
from time import monotonic
from typing import Protocol

#: A client that does not take an answer within this time is gone, s.
WRITE_TIMEOUT = 5.0


class LinkClosed(ConnectionError):
    """The client went away."""


class Link(Protocol):
    """What the emulator serves a client over (:class:`SocketLink`, :class:`PtyLink`)."""

    def read(self, timeout: float) -> bytes:
        """What arrived within ``timeout`` s (b"" if nothing). Raises :class:`LinkClosed`."""

    def write(self, data: bytes) -> None:
        """Send all of ``data``. Raises :class:`LinkClosed` if the client takes nothing for ``WRITE_TIMEOUT`` s."""

    def close(self) -> None:
        """Release the link."""


class SocketLink:
    """A connected TCP client, on a non-blocking socket: no call here waits longer than asked."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)

    def peer_state(self) -> str:
        """"gone" (closed its end), "idle" (connected, nothing unread) or "pending" (bytes unread).

        Never waits. A client that closed right after sending shows "pending" until the server
        has read what it sent.
        """
        try:
            return "gone" if self.sock.recv(1, socket.MSG_PEEK) == b"" else "pending"
        except BlockingIOError:  # nothing to read, connection open
            return "idle"
        except (OSError, ValueError):  # reset, or closed meanwhile
            return "gone"

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return b""
        try:
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise LinkClosed(str(exc)) from None
        if not data:
            raise LinkClosed("client closed the connection")
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = monotonic() + WRITE_TIMEOUT  # a client that stops reading cannot block the server
        while view:
            # Send first, wait only when the socket's buffer is full: a select before every frame
            # cost each of a scan's 256 lines a system call.
            try:
                view = view[self.sock.send(view) :]
                continue
            except BlockingIOError:
                pass
            except (OSError, ValueError) as exc:
                raise LinkClosed(str(exc)) from None
            if monotonic() > deadline:
                raise LinkClosed(f"the client took nothing for {WRITE_TIMEOUT} s")
            try:
                select.select([], [self.sock], [], 0.1)
            except (OSError, ValueError) as exc:
                raise LinkClosed(str(exc)) from None

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone
        self.sock.close()


class PtyLink:
    """The master side of a pseudo-terminal; clients open ``path`` as a serial port."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation: a clean 8-bit line
        os.set_blocking(self.master, False)  # a full buffer must not block a write forever
        self.path = os.ttyname(self._slave)

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.master, 1 << 16)
        except BlockingIOError:
            return b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = monotonic() + WRITE_TIMEOUT
        while view:
            _, writable, _ = select.select([], [self.master], [], 0.1)
            if writable:
                try:
                    view = view[os.write(self.master, view) :]
                except BlockingIOError:
                    continue
            elif monotonic() > deadline:
                # Nobody reads the other end: drop what is pending, as a serial line would.
                raise LinkClosed("no reader on the pty")

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)
