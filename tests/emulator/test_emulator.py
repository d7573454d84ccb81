"""The emulator: the twin behind the wire protocol, indistinguishable from the twin in process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import control
from control import ScanSpec, wire
from control.errors import UrlError
from control.served import Served
from control.urls import listen_address
from control.wire import Cmd, Nak

OPTIONS = "seed=3&grid=64&field=5e-7"
ROOT = Path(__file__).resolve().parents[2]


def script(scope) -> list:
    """A little of everything, returning every result."""
    out = [scope.scan(ScanSpec(center=(0.25e-6, 0.25e-6), size=(0.4e-6, 0.4e-6), pixels=(32, 24), line_rate=2.0))]
    out.append(scope.apply_pulse(0.2e-6, 0.25e-6, 7.74, 0.25e-3))
    out.append(scope.apply_pulse(0.3e-6, 0.2e-6, -9.1, 3.3e-3))
    scope.move_tip(0.1e-6, 0.4e-6, speed=2e-6)
    out.append(scope.now())
    out.append(scope.scan(ScanSpec(center=(0.25e-6, 0.25e-6), size=(0.4e-6, 0.4e-6), pixels=(32, 16), retrace=True)))
    out.append(scope.scan(ScanSpec(center=(0.25e-6, 0.25e-6), size=(0.3e-6, 0.3e-6), pixels=(64, 8), path="spiral")))
    out.append(scope.now())
    return out


def assert_identical(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, control.ScanResult):
            assert x.spec == y.spec and set(x.channels) == set(y.channels)
            for name in x.channels:
                assert x.channels[name].tobytes() == y.channels[name].tobytes(), name
            assert x.line_times.tobytes() == y.line_times.tobytes()
            assert x.x.tobytes() == y.x.tobytes() and x.y.tobytes() == y.y.tobytes()
        else:
            assert x == y


@pytest.fixture(scope="module")
def reference() -> list:
    with control.connect("twin://?" + OPTIONS) as scope:
        return script(scope)


@pytest.mark.parametrize("pty", [False, True], ids=["socket", "pty"])
def test_same_script_same_bytes_as_the_twin(reference, emulators, pty):
    running = emulators(OPTIONS, pty=pty)
    with control.connect(running.url) as scope:
        assert scope.info().backend == "emulator"
        assert_identical(script(scope), reference)


class Raw:
    """A client that skips every check: frames straight onto a socket."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("socket://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.decoder = wire.Decoder()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self, seq: int | None = None) -> wire.Frame:
        while True:
            for item in self.decoder.feed(self.sock.recv(65536)):
                if isinstance(item, wire.Frame) and (seq is None or item.seq == seq) and item.cmd != Cmd.LINE:
                    return item

    def close(self) -> None:
        self.sock.close()


def test_the_emulator_enforces_the_limits_itself(emulators):
    running = emulators(OPTIONS)
    raw = Raw(running.url)
    raw.send(wire.encode(Cmd.PULSE, 1, wire.pack_pulse(1e-7, 1e-7, 5.0, 1e-3)))
    assert wire.unpack_nak(raw.answer(1).payload)[0] == Nak.NOT_IDENTIFIED
    raw.send(wire.encode(Cmd.IDENTIFY, 1, wire.pack_identify(b"r" * 16)))  # a session starts at SEQ 1
    assert json.loads(raw.answer(1).payload)["backend"] == "emulator"
    for seq, payload, match in (
        (3, wire.pack_pulse(1e-7, 1e-7, 25.0, 1e-3), "amplitude=25.0 V exceeds the bias limit"),
        (4, wire.pack_pulse(1e-7, 1e-7, float("nan"), 1e-3), "amplitude=nan is not finite"),
        (5, wire.pack_pulse(-1.0, 1e-7, 5.0, 1e-3), "pulse position: x=-1.0 m is outside"),
        (6, wire.pack_move(1e-7, 1e-7, 1.0), "speed=1.0 m/s is outside"),
        (20, wire.pack_move(1e-7, 1e-7, 1e-30), "speed=1e-30 m/s is outside [1e-09"),  # once broke the clock
        (7, wire.pack_scan(ScanSpec(center=(2e-7, 2e-7), size=(2e-7, 2e-7), line_rate=50.0)), "line_rate=50.0 Hz"),
        (8, wire.pack_scan(ScanSpec(center=(5e-8, 2e-7), size=(2e-7, 2e-7))), "scan x extent"),
    ):
        command = {6: Cmd.MOVE, 20: Cmd.MOVE, 7: Cmd.SCAN, 8: Cmd.SCAN}.get(seq, Cmd.PULSE)
        raw.send(wire.encode(command, seq, payload))
        code, _, message = wire.unpack_nak(raw.answer(seq).payload)
        assert code == Nak.OUT_OF_RANGE and match in message
    assert running.emulator.executed == 0 and running.emulator.twin.now() == 0.0
    raw.send(wire.encode(0x33, 9))
    assert wire.unpack_nak(raw.answer(9).payload)[0] == Nak.UNKNOWN_COMMAND
    raw.send(wire.encode(Cmd.PULSE, 10, b"\x00" * 5))
    assert wire.unpack_nak(raw.answer(10).payload)[0] == Nak.MALFORMED
    # A resend (same client, same sequence number) is answered from the cache, not executed.
    pulse = wire.encode(Cmd.PULSE, 11, wire.pack_pulse(2e-7, 2e-7, 7.0, 1e-3))
    raw.send(pulse)
    first = raw.answer(11)
    raw.send(pulse)
    assert raw.answer(11) == first
    assert running.emulator.executed == 1
    raw.close()


def test_a_second_client_is_refused_busy(emulators):
    running = emulators(OPTIONS)
    with control.connect(running.url) as first:
        with pytest.raises(control.InstrumentError, match="BUSY: another client is connected"):
            control.connect(running.url)
        first.now()
    with control.connect(running.url) as second:  # clients one after another
        assert second.now() >= 0


def test_lines_arrive_in_instrument_time_at_speed_1(emulators):
    running = emulators(OPTIONS, speed=1.0)
    arrivals = []
    with control.connect(running.url) as scope:
        scope.move_tip(0.1e-6, 0.1e-6)
        spec = ScanSpec(center=(0.2e-6, 0.2e-6), size=(0.2e-6, 0.2e-6), pixels=(16, 8), line_rate=10.0)
        start = time.monotonic()
        scope.scan(spec, on_line=lambda i, t, ch: arrivals.append(time.monotonic() - start))
    # 8 lines at 10 Hz take 0.8 s of instrument time, so at real time they cannot come sooner.
    assert len(arrivals) == 8
    assert arrivals[-1] >= 0.75
    assert arrivals[0] < arrivals[-1] - 0.4, "lines stream as they are acquired, not all at the end"


def test_a_client_that_vanishes_mid_scan_cannot_hang_the_server(emulators):
    running = emulators(OPTIONS, pty=True)
    with open(running.url, "r+b", buffering=0) as tty:  # a client that asks and never reads
        tty.write(wire.encode(Cmd.IDENTIFY, 1, wire.pack_identify(b"v" * 16)))
        tty.write(wire.encode(Cmd.SCAN, 2, wire.pack_scan(ScanSpec(center=(2.5e-7, 2.5e-7), size=(4e-7, 4e-7),
                                                                   pixels=(512, 512)))))
    time.sleep(0.5)  # the server is now writing 512 lines that nobody reads
    start = time.monotonic()
    running.stop()
    assert not running.thread.is_alive(), "the server must stop even while a client is not reading"
    assert time.monotonic() - start < 8


def test_emulate_command_serves_a_pty(reference, tmp_path):
    with Served("emulate", "--pty", "--seed", "3", "--speed", "max",
                "--twin", "grid=64&field=5e-7&seed=99") as emulator:
        with control.connect(emulator.url) as scope:
            assert_identical(script(scope), reference)  # --seed 3 overrides seed=99
    assert emulator.address is None
    assert emulator.stats["executed"] == 6  # 3 scans, 2 pulses, 1 move


def test_emulate_refuses_a_bad_listen_url():
    run = subprocess.run([sys.executable, "-m", "scenarios.cli", "emulate", "--listen", "tcp://0.0.0.0:1"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 2
    assert "must be socket://HOST:PORT" in run.stderr


def test_emulate_says_why_it_cannot_listen_and_warns_beyond_loopback():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "scenarios.cli", "emulate", "--listen",
                              f"socket://127.0.0.1:{port}", "--twin", OPTIONS],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr and "port 0 for a free one" in run.stderr
    with Served("emulate", "--listen", "socket://0.0.0.0:0", "--twin", OPTIONS) as emulator:
        assert emulator.url.startswith("socket://0.0.0.0:") and emulator.address[0] == "0.0.0.0"
    assert "warning: listening on 0.0.0.0" in emulator.stderr and "no authentication" in emulator.stderr


@pytest.mark.parametrize(("url", "address"), [
    ("socket://127.0.0.1:7001", ("127.0.0.1", 7001)),
    ("socket://0.0.0.0:0", ("0.0.0.0", 0)),
    ("socket://:7002", ("127.0.0.1", 7002)),
    ("socket://localhost:65535", ("localhost", 65535)),
])
def test_a_listen_url_gives_host_and_port(url, address):
    assert listen_address(url) == address


@pytest.mark.parametrize("url", [
    "tcp://127.0.0.1:7001",  # another scheme
    "socket://127.0.0.1",  # no port
    "socket://127.0.0.1:",  # empty port
    "socket://127.0.0.1:7001?timeout=1",  # options
    "socket://127.0.0.1:70x1",  # not digits
    "socket://127.0.0.1:\u00b2",  # a digit to str.isdigit, not to int()
    "socket://127.0.0.1:65536",  # beyond the port range
    "socket://127.0.0.1:7001/path",
    "127.0.0.1:7001",  # no scheme
    None,
])
def test_a_bad_listen_url_is_refused_with_the_accepted_form(url):
    form = r"must be socket://HOST:PORT .*e\.g\. socket://127\.0\.0\.1:7001"
    with pytest.raises(UrlError, match="listen URL .* " + form) as caught:
        listen_address(url)
    assert repr(url) in str(caught.value)

