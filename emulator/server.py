"""The emulator: a twin served over the wire protocol, on a TCP socket or a pseudo-terminal.

The server is what the FPGA controller is to a client: it parses frames, enforces the hardware
limits itself (a client that skipped validation gets a NAK and nothing happens), executes
commands on the twin in real time (or scaled, or as fast as possible), streams scan lines as
they are acquired, and answers a resent command (same client, same sequence number) from its
cache instead of executing it again (and refuses it, never executes it, once it has forgotten
that client). One client is served at a time; one that stays silent for ``IDLE_TIMEOUT`` gives way
to a newcomer. A command runs to its end even if its client's link fails meanwhile, so a resend
after reconnecting gets the whole answer; only a shutdown stops it.
"""

from __future__ import annotations

import os
import queue
import select
import socket
import threading
import time
import tty
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic

import simpy
import simpy.rt

from control import wire
from control.errors import InvalidArgumentError, LimitError
from control.limits import SafetyLimits
from control.wire import Cmd, Nak
from emulator.faults import FaultInjector, FaultPlan
from twin.backend import open_twin
from twin.instrument import TwinMicroscope

#: How long one read waits before the loop checks for shutdown, s.
POLL = 0.05
#: A client that does not take an answer within this time is gone, s.
WRITE_TIMEOUT = 5.0
#: How long a new client waits for the previous one to leave before it is refused BUSY, s.
BUSY_GRACE = 1.0
#: Longest a refused (BUSY) connection is kept open for the client to read its NAK, s.
LINGER = 1.0
#: Clients whose last answer is kept whole for resends (the least recent one's answer goes first).
CACHED_CLIENTS = 8
#: Clients whose last command's SEQ is remembered (answer kept or not). A resend of a remembered
#: command whose answer is gone, and any command of a client forgotten altogether, is refused
#: NAK UNKNOWN_OUTCOME: bounded memory, and what falls out is refused, never executed again.
KNOWN_CLIENTS = 4096
#: A connected client that has sent nothing for this long gives way to a newcomer, s.
IDLE_TIMEOUT = 30.0


def parse_speed(text: str) -> float | None:
    """``--speed``: a factor in (0, 1e6] (1 = real time), or "max" (None: no waiting).

    Raises:
        ValueError: anything else, naming the value and the accepted form.
    """
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1e6:
        raise ValueError(f"speed={text!r} must be a factor in (0, 1e6] (1 = real time) or 'max'")
    return value


class Stopped(Exception):
    """The server is shutting down: the command being executed is abandoned."""


class ScaledRealtime(simpy.rt.RealtimeEnvironment):
    """simpy's real-time environment whose ``sync`` also moves the simulated reference time.

    ``RealtimeEnvironment.sync`` resets only the wall-clock reference, so after the instrument
    sat idle at simulated time t the next event would wait t * factor seconds. Here ``sync``
    re-anchors both clocks at the current moment. ``step`` waits in slices of at most ``POLL``
    and raises :class:`Stopped` once ``stop`` is set, so a long command (a slow move at real
    time) cannot keep a server from shutting down.
    """

    stop: threading.Event | None = None

    def step(self) -> None:
        due = self.peek()
        if due != simpy.core.Infinity:
            wake = self.real_start + (due - self.env_start) * self.factor
            while (delay := wake - monotonic()) > 0:
                if self.stop is not None and self.stop.is_set():
                    raise Stopped("the emulator is shutting down")
                time.sleep(min(delay, POLL))
        super().step()

    def sync(self) -> None:
        self.env_start = self.now
        self.real_start = monotonic()

    def catch_up(self) -> None:
        """Let simulated time pass for the wall time spent idle since the last event, then sync.

        The instrument does not stop while nobody talks to it: thermal drift goes on.
        """
        due = self.env_start + (monotonic() - self.real_start) / self.factor
        if due > self.now:
            self.run(until=due)
        self.sync()


class LinkClosed(ConnectionError):
    """The client went away."""


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
            try:
                _, writable, _ = select.select([], [self.sock], [], 0.1)
                if writable:
                    view = view[self.sock.send(view) :]
            except BlockingIOError:
                continue
            except (OSError, ValueError) as exc:
                raise LinkClosed(str(exc)) from None
            if view and monotonic() > deadline:
                raise LinkClosed(f"the client took nothing for {WRITE_TIMEOUT} s")

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


@dataclass
class _Cached:
    """The last command of a client and every frame its answer took (None: answer dropped)."""

    seq: int
    frames: list[bytes] | None = field(default_factory=list)


@dataclass
class _Peer:
    """The client on one link: its id once it has identified itself.

    ``forgotten``: it identified as reconnecting (IDENTIFY with a SEQ other than 1) but the
    server holds no record of it, so its next command may be a resend of one already executed.
    """

    link: object
    client_id: bytes | None = None
    forgotten: bool = False


class Emulator:
    """One instrument (a twin on a simpy clock) answering wire-protocol frames.

    Args:
        twin_url: ``twin://?...`` URL of the twin behind the emulator.
        speed: simulated seconds per wall second (1 = real time); ``None``: as fast as possible.
        faults: fault plan (link and instrument faults); ``None``: a perfect link.
        url: how clients reach this emulator (reported by IDENTIFY).
        instrument: serve this instrument instead of opening ``twin_url`` (firmware
            co-simulation serves the RTL with the twin's physics this way). It has the twin's
            verbs (``info``, ``now``, ``move_tip``, ``apply_pulse``, ``scan`` with the
            ``on_line`` hook attribute, ``drift_burst``, ``blunt_tip``) and, to serve READ_REG,
            ``read_register(address) -> int``; it runs as fast as it can (``speed`` None).
        backend: the backend name IDENTIFY reports.
    """

    def __init__(self, twin_url: str, speed: float | None = None, faults: FaultPlan | None = None, url: str = "",
                 *, instrument=None, backend: str = "emulator") -> None:
        if speed is not None and not 0 < speed <= 1e6:
            raise ValueError(f"speed={speed!r} must be in (0, 1e6] or None for as fast as possible")
        if instrument is not None and speed is not None:
            raise ValueError("an instrument given to the emulator runs on its own clock; pass speed=None")
        self.speed = speed
        self.env = simpy.Environment() if speed is None else ScaledRealtime(factor=1.0 / speed, strict=False)
        self.twin: TwinMicroscope = instrument if instrument is not None else open_twin(twin_url, env=self.env)
        self.limits = SafetyLimits.from_hardware(self.twin.config.hardware)
        self.faults = FaultInjector(faults or FaultPlan())
        self.url = url
        self.backend = backend
        # A new id at every start: a client that reconnects to a restarted instrument must not
        # resend a command that the previous instance may have executed.
        self.boot_id = uuid.uuid4().hex
        self.commands = 0
        self.executed = 0
        self._cache: OrderedDict[bytes, _Cached] = OrderedDict()
        self._stop: threading.Event | None = None
        #: Whether a command is being executed (a newcomer is refused BUSY meanwhile).
        self.executing = False
        #: monotonic() of the last frame received from the current client.
        self.last_heard = monotonic()

    # -- serving one link ---------------------------------------------------------------------

    def serve(self, link, stop: threading.Event, evict: threading.Event | None = None) -> None:
        """Answer frames on ``link`` until the client leaves, ``stop`` is set, or ``evict`` is set.

        An evicted client (idle while a newcomer waits) is told so with NAK BUSY (SEQ 0).
        """
        decoder = wire.Decoder()
        peer = _Peer(link)
        self._stop = stop
        if isinstance(self.env, ScaledRealtime):
            self.env.stop = stop
        self.last_heard = monotonic()
        try:
            while not stop.is_set():
                if evict is not None and evict.is_set():
                    self._send(link, wire.encode(Cmd.NAK, 0, wire.pack_nak(
                        Nak.BUSY, 0, f"BUSY: this client was idle for more than {IDLE_TIMEOUT:g} s and another "
                        "client took the instrument; reconnect when it is free")))
                    return
                data = link.read(POLL)
                if not data:
                    continue
                self.last_heard = monotonic()
                for item in decoder.feed(data):
                    for frame in self._incoming(item):
                        if not self._handle(frame, peer):
                            return
                self.last_heard = monotonic()
        except (LinkClosed, Stopped):
            return

    def _incoming(self, item) -> list:
        """Apply link faults to a received frame: lost, damaged (answered BAD_CRC) or doubled."""
        if isinstance(item, wire.Damaged):
            return [item] if item.kind == "crc" else []
        raw = wire.encode(item.cmd, item.seq, item.payload)
        out = []
        for delivered in self.faults.frames(raw):
            out.extend(wire.Decoder().feed(delivered))
        return [x for x in out if isinstance(x, wire.Frame) or x.kind == "crc"]

    def _send(self, link, frame: bytes) -> None:
        if self._stop is not None and self._stop.is_set():
            raise LinkClosed("the emulator is shutting down")
        delay = self.faults.delay()
        if delay:
            time.sleep(delay)  # fault injection: link latency
        for delivered in self.faults.frames(frame):
            link.write(delivered)

    def _nak(self, link, frame, code: Nak, message: str) -> None:
        self._send(link, wire.encode(Cmd.NAK, frame.seq, wire.pack_nak(code, frame.cmd, message)))

    def _handle(self, frame, peer: _Peer) -> bool:
        """Answer one frame; False if the link must be dropped."""
        link = peer.link
        if isinstance(frame, wire.Damaged):
            self._nak(link, frame, Nak.BAD_CRC, "frame CRC mismatch; resend")
            return True
        if frame.cmd == Cmd.IDENTIFY:
            self._identify(frame, peer)
            return True
        if peer.client_id is None:
            self._nak(link, frame, Nak.NOT_IDENTIFIED, "send IDENTIFY first (protocol handshake)")
            return True
        cached = self._cache.get(peer.client_id)
        if cached is not None and cached.seq == frame.seq:
            if cached.frames is None:
                self._remember(peer.client_id, frame.seq, self._unknown_outcome(frame, "its answer is no longer held "
                               f"(more than {CACHED_CLIENTS} clients have come since)"))
            for f in self._cache[peer.client_id].frames:  # a resend: answer again, never execute twice
                self._send(link, f)
            return True
        if peer.forgotten:
            # It reconnected, and we hold no record of it: this may be a resend of a command we
            # executed and forgot. Refuse it (and its resends); its next command runs.
            peer.forgotten = False
            refusal = self._unknown_outcome(frame, f"this instrument holds no record of this client (more than "
                                            f"{KNOWN_CLIENTS} clients since, or the record was lost)")
            self._remember(peer.client_id, frame.seq, refusal)
            for f in refusal:
                self._send(link, f)
            return True
        self.commands += 1  # new commands only: fault schedules count these
        due = self.faults.scheduled(self.commands)
        cached = self._remember(peer.client_id, frame.seq, [])
        silent = bool(due & {"disconnect_at", "stall_at"})
        state = {"link": True}

        def send(data: bytes) -> None:
            cached.frames.append(data)
            if silent or not state["link"]:
                return
            try:
                self._send(link, data)
            except LinkClosed:
                # The client stopped reading (or left). The instrument finishes the command
                # anyway, keeping the whole answer for a resend after reconnecting.
                if self._stop is not None and self._stop.is_set():
                    raise Stopped("the emulator is shutting down") from None
                state["link"] = False

        if "drift_burst_at" in due:
            self.twin.drift_burst()
        if "tip_change_at" in due:
            self.twin.blunt_tip()
        self._execute(frame, send)
        if frame.cmd == Cmd.BYE:
            self._cache.pop(peer.client_id, None)  # the client is done: forget its last answer
        if "disconnect_at" in due or not state["link"]:
            return False
        if "stall_at" in due:
            time.sleep(self.faults.plan.stall)  # fault injection: the controller hangs, answer lost
        return True

    def _remember(self, client_id: bytes, seq: int, frames: list[bytes]) -> _Cached:
        """Make ``frames`` the answer kept for ``client_id``'s command ``seq``; bound the memory."""
        cached = self._cache[client_id] = _Cached(seq, frames)
        self._cache.move_to_end(client_id)
        for old in list(self._cache.values())[:-CACHED_CLIENTS]:
            old.frames = None  # its SEQ stays known: a resend of it is refused, not re-executed
        while len(self._cache) > KNOWN_CLIENTS:
            self._cache.popitem(last=False)
        return cached

    @staticmethod
    def _unknown_outcome(frame, why: str) -> list[bytes]:
        return [wire.encode(Cmd.NAK, frame.seq, wire.pack_nak(
            Nak.UNKNOWN_OUTCOME, frame.cmd,
            f"command SEQ {frame.seq} may have been executed, and {why}; it is not executed again. Check the "
            "instrument (now(), a scan) before re-issuing it"))]

    def _identify(self, frame, peer: _Peer) -> None:
        try:
            major, _, client_id = wire.unpack_identify(frame.payload)
        except wire.WireError as exc:
            self._nak(peer.link, frame, Nak.MALFORMED, str(exc))
            return
        if major != wire.PROTOCOL_MAJOR:
            self._nak(peer.link, frame, Nak.VERSION,
                      f"protocol {major}.x is not served; this emulator speaks {wire.PROTOCOL_MAJOR}.x")
            return
        peer.client_id = client_id
        # A session's first IDENTIFY carries SEQ 1; a later one is a reconnect. A reconnecting
        # client we hold no record of may resend a command we executed and forgot.
        peer.forgotten = frame.seq != 1 and client_id not in self._cache
        if frame.seq == 1:
            self._cache.pop(client_id, None)  # a new session of this id: nothing of the last is in flight
        info = self.twin.info().to_dict()
        info.update(backend=self.backend, url=self.url, identity=f"pfmtwin {self.backend}: " + info["identity"])
        info["options"]["speed"] = self.speed if self.speed is not None else "max"
        info["boot_id"] = self.boot_id
        self._send(peer.link, wire.encode(Cmd.ACK, frame.seq, wire.pack_json(info)))

    # -- commands ---------------------------------------------------------------------------------

    def _execute(self, frame, send: Callable[[bytes], None]) -> None:
        self.executing = True
        try:
            self._run_command(frame, send)
        finally:
            self.executing = False
            self.last_heard = monotonic()

    def _run_command(self, frame, send: Callable[[bytes], None]) -> None:
        seq, cmd = frame.seq, frame.cmd
        if isinstance(self.env, ScaledRealtime):
            self.env.catch_up()
        try:
            if cmd == Cmd.NOW:
                send(wire.encode(Cmd.ACK, seq, wire.pack_f64(self.twin.now())))
                return
            if cmd == Cmd.BYE:
                send(wire.encode(Cmd.ACK, seq))
                return
            if cmd == Cmd.READ_REG and hasattr(self.twin, "read_register"):
                address, _ = wire.unpack_register(frame.payload)
                send(wire.encode(Cmd.ACK, seq, self.twin.read_register(address).to_bytes(4, "little")))
                return
            if cmd not in (Cmd.MOVE, Cmd.SCAN, Cmd.PULSE):
                send(wire.encode(Cmd.NAK, seq, wire.pack_nak(Nak.UNKNOWN_COMMAND, cmd, f"command 0x{cmd:02x} is not known")))
                return
            if cmd == Cmd.MOVE:
                x, y, speed = wire.unpack_move(frame.payload)
                x, y = self.limits.check_position(x, y)
                self.twin.move_tip(x, y, self.limits.check_speed(speed))
                self.executed += 1
                send(wire.encode(Cmd.ACK, seq, wire.pack_f64(self.twin.now())))
            elif cmd == Cmd.PULSE:
                x, y, amplitude, width = wire.unpack_pulse(frame.payload)
                x, y = self.limits.check_position(x, y, what="pulse position")
                amplitude, width = self.limits.check_pulse(amplitude, width)
                record = self.twin.apply_pulse(x, y, amplitude, width)
                self.executed += 1
                send(wire.encode(Cmd.ACK, seq, wire.pack_record(record)))
            else:
                spec = wire.unpack_scan(frame.payload)
                self.limits.check_scan(spec)
                self.twin.on_line = lambda i, t, ch: send(wire.encode(Cmd.LINE, seq, wire.pack_line(i, t, ch)))
                try:
                    result = self.twin.scan(spec)
                finally:
                    self.twin.on_line = None
                self.executed += 1
                send(wire.encode(Cmd.ACK, seq, wire.pack_scan_done(spec.shape[0], self.twin.now())))
                del result
        except (LimitError, InvalidArgumentError) as exc:
            send(wire.encode(Cmd.NAK, seq, wire.pack_nak(Nak.OUT_OF_RANGE, cmd, str(exc))))
        except wire.WireError as exc:
            send(wire.encode(Cmd.NAK, seq, wire.pack_nak(Nak.MALFORMED, cmd, str(exc))))
        except (LinkClosed, Stopped):
            raise
        except Exception as exc:  # a bug must not take the instrument down: report it to the client
            send(wire.encode(Cmd.NAK, seq, wire.pack_nak(
                Nak.INTERNAL, cmd, f"the instrument failed while executing; the command may be partly done "
                f"({type(exc).__name__}: {exc})")))


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
            listener.listen(4)
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
                ready, _, _ = select.select([self._listener], [], [], POLL)
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
                ready, _, _ = select.select([sock], [], [], POLL)
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
            self.stop_event.wait(POLL / 10)  # the previous client is leaving: look again soon
        return why

    def _evict_idle(self, current: SocketLink, why: str) -> str:
        """Have the serving loop tell the idle ``current`` client and drop it; "" once it is gone."""
        self._evict.set()  # serve() sends the notice and returns within POLL s
        deadline = monotonic() + BUSY_GRACE
        while self._current is current and monotonic() < deadline:
            self.stop_event.wait(POLL / 5)
        return "" if self._current is not current else why

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
                sock = self._clients.get(timeout=POLL)
            except queue.Empty:
                continue
            self._busy.set()
            self._evict.clear()
            link = self._current = SocketLink(sock)
            try:
                self.emulator.serve(link, self.stop_event, self._evict)
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
