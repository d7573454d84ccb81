"""The wire protocol codec: one implementation for the serial client, the emulator and the tests.

The byte layout is specified in ``docs/protocol.md`` (protocol 1.0). A frame is::

    0      1..2     3..4   5     6      7 .. 7+LEN-1   7+LEN .. 7+LEN+1
    SYNC   LEN u16  SEQ    CMD   HCRC   PAYLOAD        CRC u16
    0xA5   LE       u16 LE u8    CRC-8  LEN bytes      CRC-16/CCITT-FALSE of bytes 0 .. 7+LEN-1, LE

The header check byte (CRC-8, polynomial 0x07) makes a corrupted length or sequence number
detectable before the payload is trusted; the trailing CRC-16 covers the whole frame. Both
detect every error burst of up to 8 (resp. 16) bits, so any single corrupted byte is caught.
Numbers are little-endian; arrays travel as little-endian float64. No pickle, no eval.
"""

from __future__ import annotations

import binascii
import json
import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from control.contract import PulseRecord, ScanSpec
from control.errors import PfmTwinError
from control.spectroscopy import Band, BEPSSpec, BEResult

SYNC = 0xA5
PROTOCOL_MAJOR, PROTOCOL_MINOR = 1, 2
_HEADER = struct.Struct("<BHHB")
HEADER_SIZE = _HEADER.size + 1  # + HCRC
TRAILER_SIZE = 2
MAX_PAYLOAD = 0xFFFF
MAX_FRAME = HEADER_SIZE + MAX_PAYLOAD + TRAILER_SIZE


class Cmd(IntEnum):
    """Command codes. Requests are below 0x40; responses carry the request's sequence number."""

    IDENTIFY = 0x01
    NOW = 0x02
    MOVE = 0x03
    SCAN = 0x04
    PULSE = 0x05
    BYE = 0x06
    BE = 0x07
    BEPS = 0x08
    READ_REG = 0x10
    WRITE_REG = 0x11
    ACK = 0x40
    LINE = 0x41
    NAK = 0x42
    SPECTRUM = 0x43


class Nak(IntEnum):
    """Error codes of a NAK."""

    BAD_CRC = 1
    UNKNOWN_COMMAND = 2
    OUT_OF_RANGE = 3
    BUSY = 4
    MALFORMED = 5
    VERSION = 6
    INTERNAL = 7
    NOT_IDENTIFIED = 8
    UNKNOWN_OUTCOME = 9  # protocol 1.1: a resend whose first execution the server cannot vouch for


class WireError(PfmTwinError, ValueError):
    """A payload does not decode (wrong length or values); the peer answers MALFORMED."""


def crc8(data: bytes) -> int:
    """CRC-8 (polynomial 0x07, init 0, no reflection): the header check byte."""
    crc = 0
    for byte in data:
        crc = _CRC8_TABLE[crc ^ byte]
    return crc


def _crc8_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


_CRC8_TABLE = _crc8_table()


#: From this many bytes on, the compiled slicing-by-8 CRC (:mod:`control.crc`) beats binascii's
#: byte loop (its call costs about 1 us); below, binascii is faster and numba is not imported.
FAST_CRC_BYTES = 512


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, init 0xFFFF): the frame check."""
    if len(data) < FAST_CRC_BYTES:
        return binascii.crc_hqx(data, 0xFFFF)
    from control.crc import crc16 as fast  # numba: only once a long frame (a scan line) comes

    return fast(data)


@dataclass(frozen=True)
class Frame:
    """A decoded frame."""

    seq: int
    cmd: int
    payload: bytes


@dataclass(frozen=True)
class Damaged:
    """Bytes that did not form a valid frame.

    Attributes:
        kind: "garbage" (no valid header: skipped until the next sync byte) or "crc" (valid
            header, bad frame CRC: the whole frame was skipped).
        size: bytes skipped.
        seq: the header's sequence number (for "crc"; None for garbage).
        cmd: the header's command (for "crc"; None for garbage).
    """

    kind: str
    size: int
    seq: int | None = None
    cmd: int | None = None


def encode(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """One frame.

    Raises:
        ValueError: payload longer than ``MAX_PAYLOAD`` or fields out of range.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the maximum of {MAX_PAYLOAD} bytes")
    if not 0 <= seq <= 0xFFFF or not 0 <= cmd <= 0xFF:
        raise ValueError(f"seq={seq!r} must be in [0, 65535] and cmd={cmd!r} in [0, 255]")
    header = _HEADER.pack(SYNC, len(payload), seq, cmd)
    body = header + bytes([crc8(header)]) + payload
    return body + struct.pack("<H", crc16(body))


class Decoder:
    """Streaming decoder: feed bytes as they arrive, get frames and damage reports in order.

    It resynchronizes after garbage by searching for the next sync byte whose header checks.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)

    @property
    def wanted(self) -> int:
        """Bytes still needed to complete the frame in progress (at least 1).

        Reading exactly this many lets a blocking reader return as soon as a frame is whole.
        """
        buf = self._buffer
        if not buf or buf[0] != SYNC or len(buf) < HEADER_SIZE:
            return max(1, HEADER_SIZE - len(buf)) if buf[:1] == bytes([SYNC]) else HEADER_SIZE
        _, length, _, _ = _HEADER.unpack_from(buf)
        return max(1, HEADER_SIZE + length + TRAILER_SIZE - len(buf))

    def feed(self, data: bytes) -> list[Frame | Damaged]:
        """Add ``data``; return every complete frame (and damage) it finishes."""
        self._buffer += data
        out: list[Frame | Damaged] = []
        buf = self._buffer
        skipped = 0
        while True:
            start = buf.find(SYNC)
            if start < 0:
                skipped += len(buf)
                buf.clear()
                break
            if start:
                skipped += start
                del buf[:start]
            if len(buf) < HEADER_SIZE:
                break
            header = bytes(buf[: HEADER_SIZE - 1])
            if crc8(header) != buf[HEADER_SIZE - 1]:
                skipped += 1
                del buf[:1]
                continue
            _, length, seq, cmd = _HEADER.unpack(header)
            total = HEADER_SIZE + length + TRAILER_SIZE
            if len(buf) < total:
                break
            if skipped:
                out.append(Damaged("garbage", skipped))
                skipped = 0
            (crc,) = struct.unpack_from("<H", buf, total - TRAILER_SIZE)
            with memoryview(buf) as view:  # no copy of the frame just to check it
                good = crc16(view[: total - TRAILER_SIZE]) == crc
            if not good:
                out.append(Damaged("crc", total, seq, cmd))
            else:
                out.append(Frame(seq, cmd, bytes(buf[HEADER_SIZE : total - TRAILER_SIZE])))
            del buf[:total]
        if skipped:
            out.append(Damaged("garbage", skipped))
        return out


# -- payloads ---------------------------------------------------------------------------------

_F64 = struct.Struct("<d")
_IDENTIFY = struct.Struct("<HH16s")
_MOVE = struct.Struct("<ddd")
_SCAN = struct.Struct("<ddddHHdBB")
_PULSE = struct.Struct("<dddd")
_RECORD = struct.Struct("<dddddQdd")
_LINE = struct.Struct("<HdBH")
_SCAN_DONE = struct.Struct("<Hd")
_NAK = struct.Struct("<BB")
_REG = struct.Struct("<BI")
_BAND = struct.Struct("<ddddH")           # center, width (Hz), drive amplitude (V), duration (s), bins
_BE = struct.Struct("<dd" + _BAND.format[1:])
_BE_ANSWER = struct.Struct("<dddH")       # x, y, start, bins; then bins x complex (d re, d im)
_BEPS = struct.Struct("<d" + _BAND.format[1:] + "HI")  # step, band, steps, points; then dc, points
_SPECTRUM = struct.Struct("<IHHdH")       # point, step, steps, time, bins; then 2 x bins complex
_BEPS_DONE = struct.Struct("<IHd")        # points, steps, instrument time at the end
PATHS = ("raster", "spiral")
#: Channel ids on the wire (index in this tuple).
CHANNEL_IDS = ("height", "amplitude", "phase", "height_retrace", "amplitude_retrace", "phase_retrace")


def _unpack(layout: struct.Struct, payload: bytes, what: str) -> tuple:
    if len(payload) != layout.size:
        raise WireError(f"{what} payload is {len(payload)} bytes; expected {layout.size}")
    return layout.unpack(payload)


def pack_identify(client_id: bytes) -> bytes:
    """IDENTIFY request: protocol version and a 16-byte client id (for exactly-once across reconnects)."""
    return _IDENTIFY.pack(PROTOCOL_MAJOR, PROTOCOL_MINOR, client_id)


def unpack_identify(payload: bytes) -> tuple[int, int, bytes]:
    """(major, minor, client id) of an IDENTIFY request."""
    return _unpack(_IDENTIFY, payload, "IDENTIFY")


def pack_json(value: dict) -> bytes:
    """A JSON object (identify answers only: metadata, never arrays)."""
    return json.dumps(value, sort_keys=True).encode()


def unpack_json(payload: bytes) -> dict:
    """Decode a JSON object payload."""
    try:
        value = json.loads(payload.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"JSON payload does not decode: {exc}") from None
    if not isinstance(value, dict):
        raise WireError(f"JSON payload is a {type(value).__name__}; expected an object")
    return value


def pack_f64(value: float) -> bytes:
    """One float64 (NOW answer, MOVE answer)."""
    return _F64.pack(value)


def unpack_f64(payload: bytes) -> float:
    """Decode one float64."""
    return _unpack(_F64, payload, "f64")[0]


def pack_move(x: float, y: float, speed: float) -> bytes:
    """MOVE request."""
    return _MOVE.pack(x, y, speed)


def unpack_move(payload: bytes) -> tuple[float, float, float]:
    """(x, y, speed) of a MOVE request."""
    return _unpack(_MOVE, payload, "MOVE")


def pack_scan(spec: ScanSpec) -> bytes:
    """SCAN request."""
    return _SCAN.pack(*spec.center, *spec.size, *spec.pixels, spec.line_rate, PATHS.index(spec.path), int(spec.retrace))


def unpack_scan(payload: bytes) -> ScanSpec:
    """The ScanSpec of a SCAN request (its types and shape checked by ScanSpec itself)."""
    cx, cy, w, h, nx, ny, rate, path, retrace = _unpack(_SCAN, payload, "SCAN")
    if path >= len(PATHS) or retrace > 1:
        raise WireError(f"SCAN path={path!r} or retrace={retrace!r} is not a valid code")
    try:
        return ScanSpec(center=(cx, cy), size=(w, h), pixels=(nx, ny), line_rate=rate, path=PATHS[path],
                        retrace=bool(retrace))
    except (TypeError, ValueError) as exc:
        raise WireError(f"SCAN spec is invalid: {exc}") from None


def pack_pulse(x: float, y: float, amplitude: float, width: float) -> bytes:
    """PULSE request."""
    return _PULSE.pack(x, y, amplitude, width)


def unpack_pulse(payload: bytes) -> tuple[float, float, float, float]:
    """(x, y, amplitude, width) of a PULSE request."""
    return _unpack(_PULSE, payload, "PULSE")


def pack_record(r: PulseRecord) -> bytes:
    """PULSE answer: what the controller emitted."""
    return _RECORD.pack(r.x, r.y, r.amplitude, r.width, r.start, r.cycles, r.requested_amplitude, r.requested_width)


def unpack_record(payload: bytes) -> PulseRecord:
    """Decode a PULSE answer."""
    x, y, a, w, start, cycles, ra, rw = _unpack(_RECORD, payload, "PULSE answer")
    return PulseRecord(x=x, y=y, amplitude=a, width=w, start=start, cycles=cycles,
                       requested_amplitude=ra, requested_width=rw)


def pack_line(index: int, time: float, channels: dict[str, np.ndarray]) -> bytes:
    """LINE frame of a scan: line index, start time and each channel as little-endian float64."""
    points = len(next(iter(channels.values())))
    parts = [_LINE.pack(index, time, len(channels), points)]
    for name, values in channels.items():
        parts.append(bytes([CHANNEL_IDS.index(name)]))
        parts.append(np.ascontiguousarray(values, dtype="<f8").tobytes())
    return b"".join(parts)


def unpack_line(payload: bytes) -> tuple[int, float, dict[str, np.ndarray]]:
    """(index, time, channels) of a LINE frame."""
    if len(payload) < _LINE.size:
        raise WireError(f"LINE payload is {len(payload)} bytes; shorter than its {_LINE.size}-byte header")
    index, time, count, points = _LINE.unpack_from(payload)
    expected = _LINE.size + count * (1 + 8 * points)
    if len(payload) != expected:
        raise WireError(f"LINE payload is {len(payload)} bytes; {count} channels of {points} points need {expected}")
    channels, offset = {}, _LINE.size
    for _ in range(count):
        cid = payload[offset]
        if cid >= len(CHANNEL_IDS):
            raise WireError(f"LINE channel id {cid} is unknown")
        channels[CHANNEL_IDS[cid]] = np.frombuffer(payload, dtype="<f8", count=points, offset=offset + 1).astype(np.float64)
        offset += 1 + 8 * points
    return index, time, channels


def pack_scan_done(lines: int, end: float) -> bytes:
    """SCAN answer after the last LINE: line count and instrument time at the end."""
    return _SCAN_DONE.pack(lines, end)


def unpack_scan_done(payload: bytes) -> tuple[int, float]:
    """(lines, end time) of a SCAN answer."""
    return _unpack(_SCAN_DONE, payload, "SCAN answer")


def pack_nak(code: int, cmd: int, message: str) -> bytes:
    """NAK: error code, the refused command, and a UTF-8 message naming the value, limit and fix."""
    return _NAK.pack(code, cmd & 0xFF) + message.encode()[: MAX_PAYLOAD - _NAK.size]


def unpack_nak(payload: bytes) -> tuple[int, int, str]:
    """(code, command, message) of a NAK."""
    if len(payload) < _NAK.size:
        raise WireError(f"NAK payload is {len(payload)} bytes; expected at least {_NAK.size}")
    code, cmd = _NAK.unpack_from(payload)
    return code, cmd, payload[_NAK.size :].decode(errors="replace")


def pack_register(address: int, value: int = 0) -> bytes:
    """READ_REG / WRITE_REG request: register address and (for writes) a 32-bit value."""
    return _REG.pack(address, value)


def unpack_register(payload: bytes) -> tuple[int, int]:
    """(address, value) of a register request."""
    return _unpack(_REG, payload, "register")


# -- band excitation (protocol 1.2) --------------------------------------------------------------


def _complex(payload: bytes, offset: int, count: int, what: str) -> np.ndarray:
    if len(payload) != offset + 16 * count:
        raise WireError(f"{what} payload is {len(payload)} bytes; {count} complex values need {offset + 16 * count}")
    return np.frombuffer(payload, dtype="<f8", count=2 * count, offset=offset).astype(np.float64).view(np.complex128)


def _band(values) -> Band:
    try:
        center, width, amplitude, duration, bins = values
        return Band(center=center, width=width, amplitude=amplitude, duration=duration, bins=bins)
    except (TypeError, ValueError) as exc:
        raise WireError(f"band is invalid: {exc}") from None


def pack_be(x: float, y: float, band: Band) -> bytes:
    """BE request: the point and the band."""
    return _BE.pack(x, y, band.center, band.width, band.amplitude, band.duration, band.bins)


def unpack_be(payload: bytes) -> tuple[float, float, Band]:
    """(x, y, band) of a BE request (the band's values checked by Band itself)."""
    x, y, *band = _unpack(_BE, payload, "BE")
    return x, y, _band(band)


def pack_be_answer(result: BEResult) -> bytes:
    """BE answer: where, when, the bins' frequencies (the instrument's: an FPGA's table has its
    own harmonics) and the complex response per bin."""
    response = np.ascontiguousarray(result.response, dtype=np.complex128)
    return (_BE_ANSWER.pack(result.x, result.y, result.start, len(response))
            + np.asarray(result.frequencies, dtype="<f8").tobytes() + response.astype("<c16").tobytes())


def unpack_be_answer(payload: bytes, band: Band) -> BEResult:
    """The BEResult of a BE answer to a request for ``band``."""
    if len(payload) < _BE_ANSWER.size:
        raise WireError(f"BE answer is {len(payload)} bytes; shorter than its {_BE_ANSWER.size}-byte header")
    x, y, start, bins = _BE_ANSWER.unpack_from(payload)
    if bins != band.bins:
        raise WireError(f"BE answer has {bins} bins; {band.bins} were asked for")
    frequencies = _floats(payload, _BE_ANSWER.size, bins, "BE answer")
    return BEResult(x=x, y=y, band=band, frequencies=frequencies,
                    response=_complex(payload, _BE_ANSWER.size + 8 * bins, bins, "BE answer"), start=start)


def _floats(payload: bytes, offset: int, count: int, what: str) -> np.ndarray:
    if len(payload) < offset + 8 * count:
        raise WireError(f"{what} payload is {len(payload)} bytes; too short for {count} frequencies")
    return np.frombuffer(payload, dtype="<f8", count=count, offset=offset).astype(np.float64)


def beps_points_per_command(steps: int) -> int:
    """Most BEPS points one request carries with ``steps`` DC steps (the payload limit)."""
    return (MAX_PAYLOAD - _BEPS.size - 8 * steps) // 16


def pack_beps(spec: BEPSSpec) -> bytes:
    """BEPS request: step, band, the DC of each step, the points."""
    b = spec.band
    if len(spec.points) > beps_points_per_command(len(spec.dc)):
        raise WireError(f"{len(spec.points)} BEPS points do not fit one request (at most "
                        f"{beps_points_per_command(len(spec.dc))} with {len(spec.dc)} steps); split them")
    head = _BEPS.pack(spec.step, b.center, b.width, b.amplitude, b.duration, b.bins, len(spec.dc), len(spec.points))
    return head + np.asarray(spec.dc, dtype="<f8").tobytes() + np.asarray(spec.points, dtype="<f8").tobytes()


def unpack_beps(payload: bytes) -> BEPSSpec:
    """The BEPSSpec of a BEPS request."""
    if len(payload) < _BEPS.size:
        raise WireError(f"BEPS payload is {len(payload)} bytes; shorter than its {_BEPS.size}-byte header")
    step, *band, steps, points = _BEPS.unpack_from(payload)
    if len(payload) != _BEPS.size + 8 * steps + 16 * points:
        raise WireError(f"BEPS payload is {len(payload)} bytes; {steps} steps and {points} points need "
                        f"{_BEPS.size + 8 * steps + 16 * points}")
    dc = np.frombuffer(payload, dtype="<f8", count=steps, offset=_BEPS.size)
    xy = np.frombuffer(payload, dtype="<f8", count=2 * points, offset=_BEPS.size + 8 * steps).reshape(points, 2)
    try:
        return BEPSSpec(points=tuple(map(tuple, xy.tolist())), dc=tuple(dc.tolist()), step=step, band=_band(band))
    except (TypeError, ValueError) as exc:
        raise WireError(f"BEPS spec is invalid: {exc}") from None


def pack_spectrum(point: int, step: int, steps: int, time: float, response: np.ndarray) -> bytes:
    """SPECTRUM frame of a BEPS measurement: one step at one point, DC on then off, complex per bin."""
    response = np.ascontiguousarray(response, dtype=np.complex128)
    return _SPECTRUM.pack(point, step, steps, time, response.shape[-1]) + response.astype("<c16").tobytes()


def unpack_spectrum(payload: bytes) -> tuple[int, float, np.ndarray]:
    """(index = point x steps + step, step start time, response (2, bins)) of a SPECTRUM frame."""
    if len(payload) < _SPECTRUM.size:
        raise WireError(f"SPECTRUM payload is {len(payload)} bytes; shorter than its {_SPECTRUM.size}-byte header")
    point, step, steps, time, bins = _SPECTRUM.unpack_from(payload)
    if step >= steps:
        raise WireError(f"SPECTRUM step {step} of {steps} steps")
    return point * steps + step, time, _complex(payload, _SPECTRUM.size, 2 * bins, "SPECTRUM").reshape(2, bins)


def pack_beps_done(points: int, steps: int, end: float, frequencies: np.ndarray) -> bytes:
    """BEPS answer after the last SPECTRUM: points, steps, instrument time at the end, the bins' frequencies."""
    return _BEPS_DONE.pack(points, steps, end) + np.asarray(frequencies, dtype="<f8").tobytes()


def unpack_beps_done(payload: bytes) -> tuple[int, int, float, np.ndarray]:
    """(points, steps, end time, bin frequencies) of a BEPS answer."""
    if len(payload) < _BEPS_DONE.size or (len(payload) - _BEPS_DONE.size) % 8:
        raise WireError(f"BEPS answer is {len(payload)} bytes; expected {_BEPS_DONE.size} + 8 per bin")
    points, steps, end = _BEPS_DONE.unpack_from(payload)
    return points, steps, end, _floats(payload, _BEPS_DONE.size, (len(payload) - _BEPS_DONE.size) // 8, "BEPS answer")
