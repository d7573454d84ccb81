"""The wire protocol as the instrument answers it: frames in, answers out, each command once.

:class:`Emulator` is what the FPGA controller is to a client: it parses frames, enforces the
hardware limits itself (a client that skipped validation gets a NAK and nothing happens),
executes commands on the twin in real time (or scaled, or as fast as possible), streams scan
lines as they are acquired, and answers a resent command (same client, same sequence number)
from its cache instead of executing it again (and refuses it, never executes it, once it has
forgotten that client). A command runs to its end even if its client's link fails meanwhile, so
a resend after reconnecting gets the whole answer; only a shutdown stops it. Which client it
serves, and when, is :mod:`emulator.server`'s business.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic
from typing import Protocol

import simpy

from control import InstrumentInfo, LineCallback, PulseRecord, ScanResult, ScanSpec, wire
from control.errors import InvalidArgumentError, LimitError
from control.limits import SafetyLimits
from control.spectroscopy import check_band, check_beps
from control.wire import Cmd, Nak
from emulator import clock
from emulator.clock import ScaledRealtime, Stopped
from emulator.faults import FaultInjector, FaultPlan
from emulator.links import Link, LinkClosed
from twin.backend import open_twin

#: Clients whose last answer is kept whole for resends (the least recent one's answer goes first).
CACHED_CLIENTS = 8
#: Clients whose last command's SEQ is remembered (answer kept or not). A resend of a remembered
#: command whose answer is gone, and any command of a client forgotten altogether, is refused
#: NAK UNKNOWN_OUTCOME: bounded memory, and what falls out is refused, never executed again.
KNOWN_CLIENTS = 4096


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

    link: Link
    client_id: bytes | None = None
    forgotten: bool = False


class ServedInstrument(Protocol):
    """What the emulator serves, declared once: the contract's verbs and the fault hooks.

    The twin (:class:`twin.instrument.TwinMicroscope`) and firmware co-simulation
    (``firmware.cosim.CosimInstrument``) implement it. An instrument that also has
    ``read_register(address) -> int`` serves READ_REG. The limits the server re-checks come from
    ``info().hardware``.
    """

    def info(self) -> InstrumentInfo: ...

    def now(self) -> float: ...

    def move_tip(self, x: float, y: float, speed: float) -> None: ...

    def scan(self, spec: ScanSpec, on_line: LineCallback | None = None) -> ScanResult: ...

    def apply_pulse(self, x: float, y: float, amplitude: float, width: float) -> PulseRecord: ...

    def drift_burst(self, factor: float = 100.0, duration: float = 60.0) -> None:
        """Thermal drift ``factor`` times faster for the next ``duration`` s (a fault hook)."""

    def blunt_tip(self, factor: float = 2.0) -> None:
        """The tip apex radius grows ``factor``-fold (a fault hook)."""


class Emulator:
    """One instrument (a twin on a simpy clock) answering wire-protocol frames.

    Args:
        twin_url: ``twin://?...`` URL of the twin behind the emulator.
        speed: simulated seconds per wall second (1 = real time); ``None``: as fast as possible.
        faults: fault plan (link and instrument faults); ``None``: a perfect link.
        url: how clients reach this emulator (reported by IDENTIFY).
        instrument: serve this :class:`ServedInstrument` instead of opening ``twin_url``
            (firmware co-simulation serves the RTL with the twin's physics this way); it runs
            as fast as it can (``speed`` None).
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
        self.twin: ServedInstrument = instrument if instrument is not None else open_twin(twin_url, env=self.env)
        self.hardware = self.twin.info().hardware
        self.limits = SafetyLimits.from_hardware(self.hardware)
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

    def serve(self, link: Link, stop: threading.Event, evict: Callable[[], str] | None = None) -> None:
        """Answer frames on ``link`` until the client leaves, ``stop`` is set, or it is evicted.

        Args:
            link: the client's link.
            stop: set when the server shuts down.
            evict: asked every ``POLL`` s; a non-empty answer is why the client must give way
                (the server's takeover rule), sent to it as NAK BUSY (SEQ 0) before it is dropped.
        """
        decoder = wire.Decoder()
        peer = _Peer(link)
        self._stop = stop
        if isinstance(self.env, ScaledRealtime):
            self.env.stop = stop
        self.last_heard = monotonic()
        try:
            while not stop.is_set():
                if evict is not None and (notice := evict()):
                    self._send(link, wire.encode(Cmd.NAK, 0, wire.pack_nak(Nak.BUSY, 0, notice)))
                    return
                data = link.read(clock.POLL)
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

    def _send(self, link: Link, frame: bytes) -> None:
        if self._stop is not None and self._stop.is_set():
            raise LinkClosed("the emulator is shutting down")
        delay = self.faults.delay()
        if delay:
            time.sleep(delay)  # fault injection: link latency
        for delivered in self.faults.frames(frame):
            link.write(delivered)

    def _nak(self, link: Link, frame, code: Nak, message: str) -> None:
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
            if cmd in (Cmd.BE, Cmd.BEPS) and not hasattr(self.twin, "band_excitation"):
                send(wire.encode(Cmd.NAK, seq, wire.pack_nak(
                    Nak.UNKNOWN_COMMAND, cmd, f"this {self.backend} does not do band excitation or BEPS yet")))
                return
            if cmd not in (Cmd.MOVE, Cmd.SCAN, Cmd.PULSE, Cmd.BE, Cmd.BEPS):
                send(wire.encode(Cmd.NAK, seq, wire.pack_nak(Nak.UNKNOWN_COMMAND, cmd, f"command 0x{cmd:02x} is not known")))
                return
            if cmd == Cmd.MOVE:
                self.twin.move_tip(*self.limits.check_move(*wire.unpack_move(frame.payload)))
                self.executed += 1
                send(wire.encode(Cmd.ACK, seq, wire.pack_f64(self.twin.now())))
            elif cmd == Cmd.PULSE:
                record = self.twin.apply_pulse(*self.limits.check_pulse_at(*wire.unpack_pulse(frame.payload)))
                self.executed += 1
                send(wire.encode(Cmd.ACK, seq, wire.pack_record(record)))
            elif cmd == Cmd.BE:
                x, y, band = wire.unpack_be(frame.payload)
                x, y = self.limits.check_position(x, y, what="band excitation point")
                check_band(band, self.limits, self.hardware)
                result = self.twin.band_excitation(x, y, band)
                self.executed += 1
                send(wire.encode(Cmd.ACK, seq, wire.pack_be_answer(result)))
            elif cmd == Cmd.BEPS:
                spec = check_beps(wire.unpack_beps(frame.payload), self.limits, self.hardware)
                steps = len(spec.dc)
                result = self.twin.beps(spec, on_step=lambda i, k, t, r: send(
                    wire.encode(Cmd.SPECTRUM, seq, wire.pack_spectrum(i, k, steps, t, r))))
                self.executed += 1
                send(wire.encode(Cmd.ACK, seq, wire.pack_beps_done(len(spec.points), steps, self.twin.now(),
                                                                   result.frequencies)))
            else:
                spec = wire.unpack_scan(frame.payload)
                self.limits.check_scan(spec)
                result = self.twin.scan(spec, on_line=lambda i, t, ch: send(
                    wire.encode(Cmd.LINE, seq, wire.pack_line(i, t, ch))))
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
