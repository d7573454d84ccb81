"""A faulty link and a hostile peer: exactly-once, no corrupted data accepted, no crash."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import control
from control import ScanSpec, TransportError, wire
from control.recording import Recorder, read_session
from control.serial_client import SerialClient
from control.wire import Cmd
from emulator.faults import FaultPlan
from scenarios.probe import run_op, same_result, script

OPTIONS = "seed=4&grid=64&field=5e-7"
SMALL = ScanSpec(center=(0.25e-6, 0.25e-6), size=(0.3e-6, 0.3e-6), pixels=(8, 8), line_rate=10.0)


@pytest.mark.slow
def test_a_thousand_commands_over_a_faulty_link(emulators, tmp_path):
    running = emulators(OPTIONS, faults="drop=0.01,corrupt=0.01,duplicate=0.005,disconnect_at=300+700,stall_at=500,stall=0.3")
    ops = script(np.random.default_rng(0), 1000)  # the same commands pfmtwin probe sends

    client = SerialClient(running.url, timeout=0.15)
    completed, executing = 0, 0
    with control.connect("twin://?" + OPTIONS) as reference, Recorder(control.Guarded(client), tmp_path / "s.h5") as scope:
        for op in ops:
            try:
                got = run_op(scope, op)
            except TransportError as exc:  # with 8 resends and 3 reconnects per command: never here
                pytest.fail(f"command {completed} failed: {exc}")
            assert same_result(got, run_op(reference, op)), f"command {completed} ({op[0]}) returned wrong data"
            completed += 1
            executing += op[0] in ("move", "pulse", "scan")
    faults = running.emulator.faults.counts
    assert completed == 1000
    assert running.emulator.executed == executing, "a command executed twice (or not at all)"
    assert faults.get("dropped", 0) > 5 and faults.get("corrupted", 0) > 5 and faults.get("duplicated", 0) > 0
    assert client.stats["reconnected"] == 2 and client.stats["resent"] > 10
    session = read_session(tmp_path / "s.h5")
    # Every completed command is in the session (clock reads, now(), are not commands to record).
    assert sum(c.verb != "info" for c in session.commands) == completed - sum(op[0] == "now" for op in ops)
    assert sum(c.error is not None for c in session.commands) == sum(op[0] == "bad" for op in ops)


def test_a_restarted_instrument_gets_no_resend(emulators):
    from ..conftest import RunningEmulator

    first = emulators(OPTIONS)
    port = int(first.url.rsplit(":", 1)[1])
    with control.Guarded(SerialClient(first.url, timeout=0.2, retries=2, reconnects=2)) as scope:
        scope.now()
        first.stop()
        second = RunningEmulator(OPTIONS, port=port)
        try:
            with pytest.raises(TransportError, match="restarted while a command was in flight; the command may have"):
                scope.apply_pulse(1e-7, 1e-7, 5.0, 1e-3)
            assert second.emulator.executed == 0
        finally:
            second.stop()


def test_scheduled_instrument_faults_change_the_images(emulators):
    spec = ScanSpec(center=(0.25e-6, 0.25e-6), size=(0.4e-6, 0.4e-6), pixels=(32, 32))
    clean = emulators(OPTIONS)
    faulty = emulators(OPTIONS, faults="tip_change_at=2,drift_burst_at=3")
    with control.connect(clean.url) as a, control.connect(faulty.url) as b:
        assert same_result(a.scan(spec), b.scan(spec)), "command 1: no fault yet"
        before, after = a.scan(spec), b.scan(spec)  # command 2: the tip blunts to twice its radius
        assert np.median(after.amplitude) < np.median(before.amplitude), "a blunter tip blurs walls into dips"
        a.move_tip(0.1e-6, 0.1e-6)
        b.move_tip(0.1e-6, 0.1e-6)  # command 3: drift 100x for 60 s
        a.move_tip(0.1e-6, 0.1e-6, speed=1e-8)  # 60 s... of nothing: same move, no travel
        b.move_tip(0.1e-6, 0.1e-6, speed=1e-8)
        assert not same_result(a.scan(spec), b.scan(spec))


def test_the_instrument_is_gone_is_a_clear_error(emulators):
    running = emulators(OPTIONS)
    with control.Guarded(SerialClient(running.url, timeout=0.1, retries=2, reconnects=1)) as scope:
        scope.now()
        running.stop()
        with pytest.raises(TransportError, match="lost the link to 'socket://127.0.0.1:\\d+'|failed after 2 resends"):
            scope.now()


def test_fault_plans_are_checked():
    plan = FaultPlan.parse("drop=0.01,corrupt=0.02,disconnect_at=30+90,stall_at=60", seed=3)
    assert plan.disconnect_at == (30, 90) and plan.corrupt == 0.02 and plan.seed == 3
    with pytest.raises(control.UrlError, match="unknown fault 'explode'"):
        FaultPlan.parse("explode=1")
    with pytest.raises(control.UrlError, match="a probability must be in \\[0, 1\\]"):
        FaultPlan.parse("drop=2")


@pytest.fixture(scope="module")
def fuzz_target():
    from ..conftest import RunningEmulator

    running = RunningEmulator(OPTIONS)
    yield running
    running.stop()


def _frame_mutations():
    valid = [
        wire.encode(Cmd.IDENTIFY, 1, wire.pack_identify(b"f" * 16)),
        wire.encode(Cmd.PULSE, 2, wire.pack_pulse(1e-7, 1e-7, 5.0, 1e-3)),
        wire.encode(Cmd.SCAN, 3, wire.pack_scan(SMALL)),
        wire.encode(Cmd.MOVE, 4, wire.pack_move(1e-7, 1e-7, 1e-6)),
    ]
    return st.tuples(st.sampled_from(valid), st.integers(0, 63), st.integers(0, 255), st.binary(max_size=40))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300), _frame_mutations()))
def test_fuzzed_frames_never_crash_or_hang_the_server(fuzz_target, blob):
    if isinstance(blob, tuple):
        frame, index, value, tail = blob
        data = bytearray(wire.encode(Cmd.IDENTIFY, 9, wire.pack_identify(b"z" * 16)) + frame)
        i = index % len(data)
        data[i] = value
        blob = bytes(data) + tail
    host, port = fuzz_target.url.removeprefix("socket://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(blob)
    # The server must still serve the next well-formed client (no hang, no crash); while it
    # finishes a command the fuzzer smuggled in, it may answer BUSY first.
    deadline = time.monotonic() + 20
    while True:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(wire.encode(Cmd.IDENTIFY, 1, wire.pack_identify(b"n" * 16)) + wire.encode(Cmd.NOW, 2))
            decoder, answers = wire.Decoder(), {}
            while 2 not in answers and 0 not in answers:
                data = sock.recv(65536)
                assert data, "the server closed the link without an answer"
                answers.update({f.seq: f for f in decoder.feed(data) if isinstance(f, wire.Frame)})
        if 2 in answers:
            break
        assert wire.unpack_nak(answers[0].payload)[0] == wire.Nak.BUSY
        assert time.monotonic() < deadline, "the server stayed BUSY for 20 s after its client left"
    assert answers[2].cmd == Cmd.ACK and wire.unpack_f64(answers[2].payload) >= 0


def test_after_fuzzing_a_well_formed_client_is_served(fuzz_target):
    with control.connect(fuzz_target.url) as scope:
        assert scope.now() >= 0
        assert scope.scan(SMALL).amplitude.shape == (8, 8)
