"""The serial client: a ``control.Backend`` that speaks the wire protocol over any pyserial port.

``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://...``, ``spy://...``, a pty path: whatever
``serial.serial_for_url`` opens. The same client drives the real FPGA controller, the emulator
and the co-simulated RTL.

Reliability: every command carries a sequence number; the instrument remembers the last one of
each client (identified by a 16-byte id sent at IDENTIFY) and answers a resend from its cache,
so a command resent after a timeout, a damaged answer or a reconnect is executed once. The
client resends on timeouts and damaged frames, skips garbage, ignores stale and duplicate
answers, reconnects after a lost link, and raises ``TransportError`` when the instrument is gone.
"""

from __future__ import annotations

import errno
import math
import pkgutil
import select
import socket
import uuid
from collections.abc import Callable
from urllib.parse import urlencode

import numpy as np
import serial
import serial.urlhandler

from control import wire
from control.contract import InstrumentInfo, PulseRecord, ScanResult, ScanSpec
from control.errors import InstrumentError, LimitError, TransportError, UrlError
from control.hardware import HardwareSpec
from control.limits import SafetyLimits
from control.spectroscopy import Band, BEPSResult, BEPSSpec, BEResult
from control.urls import number_in, split
from control.wire import Cmd, Nak

#: Schemes pyserial opens: its ``serial.urlhandler.protocol_<scheme>`` modules.
SERIAL_SCHEMES = frozenset(
    m.name.removeprefix("protocol_") for m in pkgutil.iter_modules(serial.urlhandler.__path__)
    if m.name.startswith("protocol_")
)
#: One read waits at most this long, so deadlines are checked often enough, s.
READ_CHUNK = 0.05
#: Most bytes one read of a ``socket://`` link takes (several scan lines' frames).
SOCKET_READ = 1 << 20


def _info_from_dict(d: dict) -> InstrumentInfo:
    return InstrumentInfo(
        backend=d["backend"], url=d["url"], identity=d["identity"], protocol_version=d["protocol_version"],
        software_version=d["software_version"], hardware=HardwareSpec.from_dict(d["hardware"]),
        limits=SafetyLimits.from_dict(d["limits"]), options=d.get("options", {}),
        option_units=d.get("option_units", {}),
    )


class SerialClient:
    """The instrument at the far end of a serial link (a ``control.Backend``).

    Args:
        url: anything ``serial.serial_for_url`` opens.
        timeout: wait for an answer beyond the command's own expected duration, s.
        retries: resends of one command before giving up.
        reconnects: attempts to reopen a lost link per command.
        baudrate: for real serial ports.
    """

    def __init__(self, url: str, *, timeout: float = 1.0, retries: int = 8, reconnects: int = 3,
                 baudrate: int = 921600) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.reconnects = reconnects
        self.baudrate = baudrate
        self.client_id = uuid.uuid4().bytes  # a link identity, not simulation randomness
        self.stats = {"resent": 0, "damaged": 0, "reconnected": 0, "stale": 0}
        self._seq = 0
        self._speed: float | str = 1.0  # until IDENTIFY tells the instrument's speed factor
        self._boot_id: str | None = None
        self._info_boot: str | None = None
        self._port: serial.SerialBase | None = None
        self._decoder = wire.Decoder()
        self._open()
        try:
            self._info = self._identify()
        except BaseException:
            self._close_port()
            raise
        self._speed = self._info.options.get("speed", 1.0)
        self._boot_id = self._info_boot

    # -- link -----------------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=READ_CHUNK, write_timeout=5.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"cannot open {self.url!r}: {exc}; is the instrument (or emulator) running there?") from None
        self._decoder = wire.Decoder()

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is None:
            return
        sock = getattr(port, "_socket", None)
        if sock is not None:
            # pyserial 3.5's socket:// close() leaks the socket when shutdown() fails (peer already
            # gone) and then sleeps 0.3 s; close the socket ourselves and mark the port closed.
            sock.close()
            port._socket = None
            port.is_open = False
            return
        try:
            port.close()
        except (serial.SerialException, OSError):
            pass  # the link is already gone; nothing left to release

    def _reconnect(self) -> None:
        self._close_port()
        self._open()
        self.stats["reconnected"] += 1
        if self._seq == 0xFFFF:
            self._seq = 1  # SEQ 1 opens a session; a reconnect's IDENTIFY must not carry it
        self._identify()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF or 1
        return self._seq

    def _read_frames(self) -> list:
        """Frames and damage decoded from what arrives within one read timeout (``READ_CHUNK``)."""
        sock = getattr(self._port, "_socket", None)
        data = self._read_socket(sock) if sock is not None else self._port.read(self._decoder.wanted)
        return self._decoder.feed(data) if data else []

    @staticmethod
    def _read_socket(sock: socket.socket) -> bytes:
        """What has arrived on a ``socket://`` link (waiting up to ``READ_CHUNK`` for the first byte).

        pyserial's ``read(n)`` waits for exactly ``n`` bytes, one select and one recv at a time:
        two of each per frame (header, then the rest), which cost a 256-line image 5-10 ms on
        loopback. This takes every frame that has arrived in one call. Errors as pyserial's.
        """
        try:
            ready, _, _ = select.select([sock], [], [], READ_CHUNK)
            if not ready:
                return b""
            data = sock.recv(SOCKET_READ)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return b""
            raise serial.SerialException(f"read failed: {exc}") from None
        if not data:
            raise serial.SerialException("socket disconnected")
        return data

    def _identify(self) -> InstrumentInfo:
        # No reconnects inside the handshake: it is itself part of (re)connecting.
        answer = wire.unpack_json(
            self._exchange(Cmd.IDENTIFY, wire.pack_identify(self.client_id), duration=0.0, reconnect=False)
        )
        self._info_boot = answer.get("boot_id")
        return _info_from_dict(answer)

    # -- one command, exactly once ------------------------------------------------------------------

    def _exchange(self, cmd: int, payload: bytes, duration: float,
                  on_line: Callable[[int, float, dict], None] | None = None, lines: int = 0,
                  line_period: float = 0.0, reconnect: bool = True) -> bytes:
        """Send a command and return its ACK payload; resend and reconnect as needed.

        A resend carries the same sequence number, so the instrument answers it from its cache
        instead of executing the command again.
        """
        seq = self._next_seq()
        frame = wire.encode(cmd, seq, payload)
        scale = 0.0 if self._speed == "max" else 1.0 / float(self._speed)
        got: set[int] = set()
        reconnects, resends = 0, 0
        why = "no answer"
        while True:
            try:
                if self._port is None:
                    raise serial.SerialException("the link is closed")
                self._port.write(frame)
                answer, why = self._await(seq, got, lines, on_line,
                                          first=self.timeout + duration * scale,
                                          between=self.timeout + 2 * line_period * scale)
                if answer is not None:
                    return answer
            except (serial.SerialException, OSError) as exc:
                if isinstance(exc, TransportError):
                    raise
                if not reconnect or reconnects >= self.reconnects:
                    raise TransportError(
                        f"lost the link to {self.url!r} ({exc}) and could not restore it in {self.reconnects} "
                        f"attempt(s) ({why}); {self._maybe_done(cmd)}check that the instrument is still running"
                    ) from None
                reconnects += 1
                why = self._try_reconnect(cmd) or f"link lost ({exc})"
                continue  # resend the same frame: the instrument answers a resend from its cache
            if resends >= self.retries:
                raise TransportError(
                    f"command 0x{cmd:02x} to {self.url!r} failed after {self.retries} resends ({why}); "
                    f"{self._maybe_done(cmd)}check the link"
                )
            resends += 1
            self.stats["resent"] += 1

    @staticmethod
    def _maybe_done(cmd: int) -> str:
        if cmd in (Cmd.MOVE, Cmd.SCAN, Cmd.PULSE):
            return "the command may have been executed once: check the instrument (now(), a scan) before re-issuing it; "
        return ""

    def _try_reconnect(self, cmd: int) -> str:
        """Reopen the link; return why that failed ("" if it worked).

        Raises:
            TransportError: the instrument restarted meanwhile, so a resend is not safe.
        """
        try:
            self._reconnect()
        except (TransportError, InstrumentError) as exc:  # refused, or BUSY while it finishes our command
            self._close_port()
            return str(exc)
        if self._boot_id is not None and self._info_boot != self._boot_id:
            raise TransportError(
                f"{self.url!r} restarted while a command was in flight; {self._maybe_done(cmd)}"
                "open a new connection"
            )
        return ""

    def _await(self, seq: int, got: set[int], lines: int, on_line, first: float, between: float):
        """Read until the answer to ``seq``; return (ACK payload or None to resend, why)."""
        clock = _Deadline(first)
        while not clock.expired():
            for item in self._read_frames():
                if isinstance(item, wire.Damaged):
                    # A damaged answer of ours: keep listening. For a scan the ACK still comes
                    # and tells us lines are missing; otherwise the deadline triggers the resend.
                    self.stats["damaged"] += 1
                    continue
                if item.seq != seq:
                    if item.cmd == Cmd.NAK and item.seq == 0:
                        code, _, message = wire.unpack_nak(item.payload)
                        if code == Nak.BUSY:
                            raise InstrumentError(f"{self.url}: {message}")
                    self.stats["stale"] += 1
                    continue
                if item.cmd in (Cmd.LINE, Cmd.SPECTRUM):  # streamed parts of the answer, once each
                    index, t, data = (wire.unpack_line if item.cmd == Cmd.LINE else wire.unpack_spectrum)(item.payload)
                    if index not in got:
                        got.add(index)
                        if on_line is not None:
                            on_line(index, t, data)
                    clock = _Deadline(between)
                elif item.cmd == Cmd.ACK:
                    if len(got) < lines:
                        return None, f"{lines - len(got)} streamed frames (scan lines, spectra) lost"  # the resend replays them
                    return item.payload, ""
                elif item.cmd == Cmd.NAK:
                    code, _, message = wire.unpack_nak(item.payload)
                    if code == Nak.BAD_CRC:
                        return None, "request damaged on the link"
                    self._raise(code, message)
        return None, f"no answer within {first:.3g} s"

    def _raise(self, code: int, message: str) -> None:
        if code == Nak.OUT_OF_RANGE:
            raise LimitError(f"instrument refused: {message}")
        name = Nak(code).name if code in Nak._value2member_map_ else str(code)
        raise InstrumentError(f"instrument refused ({name}): {message}")

    # -- Backend verbs ----------------------------------------------------------------------------

    def info(self) -> InstrumentInfo:
        """What the instrument said at IDENTIFY."""
        return self._info

    def now(self) -> float:
        """Instrument time, s."""
        return wire.unpack_f64(self._exchange(Cmd.NOW, b"", duration=0.0))

    def _travel(self, x: float, y: float, speed: float) -> float:
        # An upper bound of the move time: the client does not track the tip position.
        return math.hypot(self._info.hardware.scan_range, self._info.hardware.scan_range) / speed

    def move_tip(self, x: float, y: float, speed: float) -> None:
        """Move the tip (arguments already validated)."""
        self._exchange(Cmd.MOVE, wire.pack_move(x, y, speed), duration=self._travel(x, y, speed))

    def apply_pulse(self, x: float, y: float, amplitude: float, width: float) -> PulseRecord:
        """Apply a pulse; return what the controller emitted."""
        duration = self._travel(x, y, self._info.hardware.tip_speed_max) + width
        return wire.unpack_record(self._exchange(Cmd.PULSE, wire.pack_pulse(x, y, amplitude, width), duration=duration))

    def scan(self, spec: ScanSpec, on_line: Callable[[int, float, dict], None] | None = None) -> ScanResult:
        """Acquire an image; lines stream in as the instrument acquires them."""
        ny, nx = spec.shape
        channels: dict[str, np.ndarray] = {}
        line_times = np.zeros(ny)

        def store(index: int, t: float, values: dict) -> None:
            for name, row in values.items():
                if name not in channels:  # (setdefault would build a whole image per line and drop it)
                    channels[name] = np.zeros((ny, nx))
                channels[name][index] = row
            line_times[index] = t
            if on_line is not None:
                on_line(index, t, values)

        per_line = spec.duration / ny
        approach = self._travel(0, 0, self._info.hardware.tip_speed_max)
        self._exchange(Cmd.SCAN, wire.pack_scan(spec), duration=approach + per_line, on_line=store, lines=ny,
                       line_period=per_line)
        x, y = spec.positions()
        return ScanResult(spec=spec, channels=channels, x=x, y=y, line_times=line_times)

    def band_excitation(self, x: float, y: float, band: Band) -> BEResult:
        """A band-excitation read-out at (x, y) (arguments already validated)."""
        duration = self._travel(x, y, self._info.hardware.tip_speed_max) + band.duration
        return wire.unpack_be_answer(self._exchange(Cmd.BE, wire.pack_be(x, y, band), duration=duration), band)

    def beps(self, spec: BEPSSpec) -> BEPSResult:
        """Switching spectroscopy; spectra stream in per step. A grid larger than one request
        carries goes as several commands, each executed once."""
        steps, band = len(spec.dc), spec.band
        response = np.zeros((len(spec.points), steps, 2, band.bins), dtype=complex)
        times = np.zeros((len(spec.points), steps))
        per_step = spec.step + 2 * band.duration
        chunk = wire.beps_points_per_command(steps)
        frequencies = band.frequencies()
        for first in range(0, len(spec.points), chunk):
            part = BEPSSpec(points=spec.points[first:first + chunk], dc=spec.dc, step=spec.step, band=band)

            def store(index: int, t: float, data: np.ndarray, first: int = first) -> None:
                point, step = divmod(index, steps)
                response[first + point, step] = data
                times[first + point, step] = t

            approach = self._travel(0, 0, self._info.hardware.tip_speed_max)
            done = self._exchange(Cmd.BEPS, wire.pack_beps(part), duration=approach + per_step, on_line=store,
                                  lines=len(part.points) * steps, line_period=per_step + approach)
            frequencies = wire.unpack_beps_done(done)[3]  # the instrument's bins (an FPGA table's harmonics)
        return BEPSResult(spec=spec, frequencies=frequencies, response=response, times=times)

    def close(self) -> None:
        """Say goodbye (best effort) and close the port."""
        if self._port is None:
            return
        try:
            self._exchange(Cmd.BYE, b"", duration=0.0)
        except (TransportError, InstrumentError):
            pass  # closing anyway
        finally:
            self._close_port()


class _Deadline:
    """A wall-clock deadline for reads (the link's time, not the instrument's)."""

    def __init__(self, seconds: float) -> None:
        import time

        self._now = time.monotonic
        self._end = self._now() + seconds

    def left(self) -> float:
        return max(0.0, self._end - self._now())

    def expired(self) -> bool:
        return self._now() >= self._end

    def expire(self) -> None:
        self._end = self._now()


def open_serial(url: str) -> SerialClient:
    """Backend opener for pyserial URLs and device paths.

    One option is the client's own, ``timeout`` (s, default 1): how long to wait for an answer
    (or the next streamed frame) beyond what the command itself takes on the instrument's clock,
    e.g. ``socket://127.0.0.1:7002?timeout=30`` for band excitation through a co-simulated RTL,
    whose read-outs take seconds of wall time. The rest of the URL goes to pyserial.
    """
    timeout = 1.0
    if "://" in url:
        scheme, address, raw = split(url)
        if "timeout" in raw:
            text = raw.pop("timeout")
            timeout = number_in(text, 0.0, 3600.0)
            if timeout is None:
                raise UrlError(f"option timeout={text!r} in {url!r} must be a time in (0, 3600] s, e.g. timeout=30")
            url = f"{scheme}://{address}" + (f"?{urlencode(raw)}" if raw else "")
    return SerialClient(url, timeout=timeout)
