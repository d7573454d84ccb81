"""The wire codec: round trips, corruption detection, resynchronization (hypothesis)."""

from __future__ import annotations

import binascii

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import control
from control import PulseRecord, ScanSpec, wire
from control.wire import Cmd, Damaged, Decoder, Frame, encode

payloads = st.binary(max_size=2048)
seqs = st.integers(0, 0xFFFF)
cmds = st.integers(0, 0xFF)


@given(cmds, seqs, payloads)
def test_frames_round_trip(cmd, seq, payload):
    assert Decoder().feed(encode(cmd, seq, payload)) == [Frame(seq, cmd, payload)]


@given(cmds, seqs, payloads, st.data())
def test_any_single_corrupted_byte_is_detected(cmd, seq, payload, data):
    frame = bytearray(encode(cmd, seq, payload))
    i = data.draw(st.integers(0, len(frame) - 1))
    frame[i] ^= data.draw(st.integers(1, 255))
    decoded = Decoder().feed(bytes(frame))
    assert Frame(seq, cmd, payload) not in decoded
    assert not any(isinstance(x, Frame) for x in decoded), f"corrupted byte {i} accepted: {decoded}"


@given(st.lists(st.tuples(cmds, seqs, payloads), min_size=1, max_size=5), st.binary(max_size=64), st.data())
def test_resynchronizes_after_garbage_and_in_any_chunking(frames, garbage, data):
    stream = garbage + b"".join(encode(c, s, p) for c, s, p in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder, out = Decoder(), []
    for a, b in zip([0, *cuts], [*cuts, len(stream)]):
        out += decoder.feed(stream[a:b])
    got = [x for x in out if isinstance(x, Frame)]
    # Garbage may by chance contain a frame-looking prefix; the real frames all come through.
    assert got[-len(frames):] == [Frame(s, c, p) for c, s, p in frames]
    assert all(isinstance(x, Frame) or x.kind in ("garbage", "crc") for x in out)


def test_a_damaged_payload_reports_the_sequence_number():
    frame = bytearray(encode(Cmd.PULSE, 77, b"\x00" * 32))
    frame[10] ^= 0xFF
    (item,) = Decoder().feed(bytes(frame))
    assert item == Damaged("crc", len(frame), 77, Cmd.PULSE)


def test_wanted_tells_a_reader_how_much_to_ask_for():
    frame = encode(Cmd.ACK, 5, b"x" * 100)
    decoder = Decoder()
    assert decoder.wanted == wire.HEADER_SIZE
    decoder.feed(frame[:3])
    assert decoder.wanted == wire.HEADER_SIZE - 3
    decoder.feed(frame[3:20])
    assert decoder.wanted == len(frame) - 20
    assert decoder.feed(frame[20:]) == [Frame(5, Cmd.ACK, b"x" * 100)]


def test_oversized_payloads_are_refused():
    with pytest.raises(ValueError, match="exceeds the maximum of 65535 bytes"):
        encode(Cmd.ACK, 1, b"\x00" * 70000)


def test_crcs_match_their_published_check_values():
    assert wire.crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE
    assert wire.crc8(b"123456789") == 0xF4  # CRC-8 (poly 0x07)


@settings(max_examples=50)
@given(
    st.floats(0, 1e-5), st.floats(0, 1e-5), st.floats(1e-9, 1e-5), st.floats(1e-9, 1e-5),
    st.integers(8, 1024), st.integers(8, 1024), st.floats(0.01, 10), st.sampled_from(["raster", "spiral"]), st.booleans(),
)
def test_scan_specs_round_trip(cx, cy, w, h, nx, ny, rate, path, retrace):
    spec = ScanSpec(center=(cx, cy), size=(w, h), pixels=(nx, ny), line_rate=rate, path=path, retrace=retrace)
    assert wire.unpack_scan(wire.pack_scan(spec)) == spec


@given(st.integers(0, 1023), st.floats(0, 1e6), st.integers(1, 256), st.integers(1, 6))
def test_lines_round_trip_bitwise(index, time, points, count):
    rng = np.random.default_rng(index)
    channels = {name: rng.standard_normal(points) for name in wire.CHANNEL_IDS[:count]}
    i, t, back = wire.unpack_line(wire.pack_line(index, time, channels))
    assert (i, t) == (index, time)
    assert all(back[k].tobytes() == v.tobytes() for k, v in channels.items())


def test_records_round_trip():
    record = PulseRecord(x=1e-6, y=2e-6, amplitude=7.74, width=2.5e-4, start=12.5, cycles=25000,
                         requested_amplitude=7.7401, requested_width=2.5e-4)
    assert wire.unpack_record(wire.pack_record(record)) == record


@pytest.mark.parametrize(
    ("unpack", "payload", "match"),
    [
        (wire.unpack_pulse, b"\x00" * 31, "PULSE payload is 31 bytes; expected 32"),
        (wire.unpack_line, b"\x00" * 3, "shorter than its 13-byte header"),
        (wire.unpack_scan, wire.pack_scan(ScanSpec(center=(0, 0), size=(1, 1)))[:-1] + b"\x07", "not a valid code"),
        (wire.unpack_json, b"[1, 2]", "is a list; expected an object"),
    ],
)
def test_malformed_payloads_are_a_clear_error(unpack, payload, match):
    with pytest.raises(wire.WireError, match=match):
        unpack(payload)


def test_the_contract_reports_the_wire_protocol_version():
    assert control.PROTOCOL_VERSION == f"{wire.PROTOCOL_MAJOR}.{wire.PROTOCOL_MINOR}"


def test_phases_wrap_into_the_instruments_range():
    assert control.wrap_phase(270.0) == -90.0 and control.wrap_phase(-91.0) == 269.0
    assert np.array_equal(control.wrap_phase(np.array([-90.0, 0.0, 269.5, 450.0])), [-90.0, 0.0, 269.5, 90.0])


@given(st.binary(max_size=20000), st.integers(0, 0xFFFF))
@settings(max_examples=300, deadline=None)
def test_the_compiled_crc16_is_binascii_crc_hqx(data, start):
    from control.crc import crc16 as fast

    assert fast(data, start) == binascii.crc_hqx(data, start)
    assert fast(bytearray(data), start) == fast(memoryview(data), start) == binascii.crc_hqx(data, start)
    assert wire.crc16(data) == binascii.crc_hqx(data, 0xFFFF), "the frame check, either path"
