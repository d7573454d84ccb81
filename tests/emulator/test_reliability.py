"""The emulator's edges under hostile use (issue 11): stalled readers, many clients, idle clients,
long commands, signals. Each test reproduces a failure seen before the fix."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import control
from control import ScanSpec, wire
from control.served import Served
from control.wire import Cmd, Nak
from emulator import clock, links, protocol, server

from ..conftest import alive

OPTIONS = "seed=3&grid=64&field=5e-7"
ROOT = Path(__file__).resolve().parents[2]


class Raw:
    """A client that skips every check: frames straight onto a socket."""

    def __init__(self, url: str, client_id: bytes) -> None:
        host, port = url.removeprefix("socket://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.decoder = wire.Decoder()
        self.client_id = client_id

    def identify(self, seq: int) -> dict:
        self.sock.sendall(wire.encode(Cmd.IDENTIFY, seq, wire.pack_identify(self.client_id)))
        return json.loads(self.answer(seq).payload)

    def send(self, cmd: int, seq: int, payload: bytes = b"") -> None:
        self.sock.sendall(wire.encode(cmd, seq, payload))

    def answer(self, seq: int) -> wire.Frame:
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            for item in self.decoder.feed(data):
                if isinstance(item, wire.Frame) and item.seq in (seq, 0) and item.cmd != Cmd.LINE:
                    return item

    def close(self) -> None:
        self.sock.close()


PULSE = wire.pack_pulse(2e-7, 2e-7, 7.0, 1e-3)


def test_a_scan_whose_client_stalls_mid_answer_completes_after_the_stall(emulators, monkeypatch):
    """The client's on_line blocks longer than the server waits for a reader: the server drops
    the link but the instrument finishes the scan, so the resend gets every line and the ACK."""
    monkeypatch.setattr(links, "WRITE_TIMEOUT", 0.5)
    running = emulators(OPTIONS)
    spec = ScanSpec(center=(2.5e-7, 2.5e-7), size=(4e-7, 4e-7), pixels=(1024, 64), retrace=True, line_rate=4.0)
    seen: list[int] = []

    def slow_plot(i: int, t: float, channels: dict) -> None:
        seen.append(i)
        if i == 2:
            time.sleep(2.0)  # a debugger breakpoint, a slow live plot

    with control.connect(running.url) as scope:
        result = scope.scan(spec, on_line=slow_plot)
        after = scope.now()
    with control.connect("twin://?" + OPTIONS) as twin:
        expected = twin.scan(spec)
        expected_after = twin.now()
    assert sorted(set(seen)) == list(range(64))
    assert result.channels["amplitude"].tobytes() == expected.channels["amplitude"].tobytes()
    assert after == expected_after, "the instrument's clock ran the scan once, to its end"
    assert running.emulator.executed == 1, "the scan ran once"


def test_a_pulse_is_never_applied_twice_whatever_the_number_of_clients_between(emulators, monkeypatch):
    """A client whose ACK was lost comes back after more clients than the server remembers
    answers for (8) and more than it remembers at all (patched to 10 here, 4096 by default):
    its resend is answered from the cache, or refused, never executed again."""
    monkeypatch.setattr(protocol, "KNOWN_CLIENTS", 10)
    running = emulators(OPTIONS)
    for clients_between, expect in ((3, "cached"), (9, "executed, answer gone"), (12, "forgotten")):
        lost = Raw(running.url, f"lost-{clients_between:02d}".encode().ljust(16, b"."))
        lost.identify(1)
        lost.send(Cmd.PULSE, 2, PULSE)
        first = lost.answer(2)
        assert first.cmd == Cmd.ACK
        lost.close()  # its ACK "was lost": the client will resend
        executed = running.emulator.executed
        for k in range(clients_between):  # clients that leave without BYE (killed, unplugged)
            other = Raw(running.url, f"other-{clients_between:02d}-{k:02d}".encode().ljust(16, b"."))
            other.identify(1)
            other.send(Cmd.NOW, 2)
            assert other.answer(2).cmd == Cmd.ACK
            other.close()
        back = Raw(running.url, lost.client_id)
        back.identify(3)  # a reconnect: not the session's first IDENTIFY
        back.send(Cmd.PULSE, 2, PULSE)
        again = back.answer(2)
        if expect == "cached":
            assert again == first
        else:
            assert again.cmd == Cmd.NAK
            code, refused, message = wire.unpack_nak(again.payload)
            assert code == Nak.UNKNOWN_OUTCOME and refused == Cmd.PULSE
            assert "may have been executed" in message and "check the instrument" in message.lower(), message
            back.send(Cmd.PULSE, 2, PULSE)  # resent again: refused again, the same way
            assert back.answer(2) == again
        assert running.emulator.executed == executed, f"{clients_between} clients between: pulse applied twice"
        back.send(Cmd.NOW, 4)  # a new command of the same client runs
        assert back.answer(4).cmd == Cmd.ACK
        back.close()


def test_the_serial_client_reports_a_forgotten_command_clearly(emulators, monkeypatch):
    monkeypatch.setattr(protocol, "KNOWN_CLIENTS", 2)
    running = emulators(OPTIONS)
    scope = control.connect(running.url)
    scope.now()
    scope._backend._close_port()  # the link drops between commands
    for k in range(3):  # clients that leave without BYE push it out of the server's memory
        other = Raw(running.url, f"other-{k}".encode().ljust(16, b"."))
        other.identify(1)
        other.send(Cmd.NOW, 2)
        other.answer(2)
        other.close()
    # The client reconnects by itself. The instrument cannot tell its next command from a resend
    # of one it executed and forgot, so it refuses it, saying why; the command after that runs.
    with pytest.raises(control.InstrumentError, match=r"UNKNOWN_OUTCOME.*may have been executed"):
        scope.apply_pulse(2e-7, 2e-7, 7.0, 1e-3)
    assert running.emulator.executed == 0
    record = scope.apply_pulse(2e-7, 2e-7, 7.0, 1e-3)
    assert running.emulator.executed == 1 and record.requested_amplitude == 7.0
    scope.close()


def test_an_idle_client_is_taken_over_and_told(emulators, monkeypatch):
    """One client connected and silent for longer than IDLE_TIMEOUT gives way to a new one; it
    learns why on its next command. Before that, a newcomer is refused BUSY (with the rule)."""
    monkeypatch.setattr(server, "IDLE_TIMEOUT", 1.0)
    running = emulators(OPTIONS)
    idle = control.connect(running.url)
    idle.now()
    with pytest.raises(control.InstrumentError, match=r"BUSY: another client is connected.*idle for 1 s gives way"):
        control.connect(running.url)
    time.sleep(1.3)
    with control.connect(running.url) as newcomer:
        assert newcomer.now() >= 0
        with pytest.raises(control.PfmTwinError, match="idle"):
            idle.now()
    idle.close()


def test_sigterm_ends_the_emulator_during_a_long_command(tmp_path):
    """At real time a slow legal move takes minutes; SIGTERM still ends the server at once, and
    a newcomer meanwhile is told BUSY instead of hanging."""
    with Served("emulate", "--listen", "socket://127.0.0.1:0", "--speed", "1", "--twin", OPTIONS) as emulator:
        url = emulator.url
        slow = Raw(url, b"slow-mover......")
        slow.identify(1)
        slow.send(Cmd.MOVE, 2, wire.pack_move(4e-7, 4e-7, 1e-8))  # 40 s at real time
        time.sleep(0.5)
        slow.close()  # the client gives up; the instrument is still moving
        start = time.monotonic()
        with pytest.raises(control.InstrumentError, match="BUSY"):
            control.connect(url)
        assert time.monotonic() - start < 5
        emulator.proc.send_signal(signal.SIGTERM)
        emulator.proc.wait(timeout=5)


def test_a_second_client_waits_its_turn_while_the_first_works(emulators, monkeypatch):
    """Not a takeover: a client that is executing a command is never idle."""
    monkeypatch.setattr(server, "IDLE_TIMEOUT", 0.2)
    running = emulators(OPTIONS, speed=1.0)
    started, done = threading.Event(), threading.Event()

    def work() -> None:
        with control.connect(running.url) as busy:
            busy.scan(ScanSpec(center=(2.5e-7, 2.5e-7), size=(2e-7, 2e-7), pixels=(16, 8), line_rate=4.0),
                      on_line=lambda *_: started.set())
        done.set()

    thread = threading.Thread(target=work)
    thread.start()
    assert started.wait(20)
    time.sleep(0.5)  # longer than the idle timeout: but a client waiting for its scan is not idle
    with pytest.raises(control.InstrumentError, match="BUSY"):
        control.connect(running.url)
    thread.join(timeout=20)
    assert done.is_set()


def test_an_id_reused_for_a_new_session_is_not_a_resend(emulators):
    """IDENTIFY with SEQ 1 starts a session: a client reusing its id (a health check, a script
    run twice) gets its SEQ 2 executed, not an old answer replayed or refused. Found by
    ``pfmtwin probe``: every health check after more than 8 other clients was refused."""
    running = emulators(OPTIONS)
    times = []
    for round_ in range(2):
        probe = Raw(running.url, b"health-check....")
        probe.identify(1)
        probe.send(Cmd.MOVE, 2, wire.pack_move(1e-7 * (round_ + 1), 1e-7, 1e-6))
        answer = probe.answer(2)
        assert answer.cmd == Cmd.ACK, wire.unpack_nak(answer.payload)
        times.append(wire.unpack_f64(answer.payload))
        probe.close()
        for k in range(10):  # more clients than answers are kept for
            other = Raw(running.url, f"other-{round_}-{k:02d}".encode().ljust(16, b"."))
            other.identify(1)
            other.send(Cmd.NOW, 2)
            other.answer(2)
            other.close()
    assert running.emulator.executed == 2 and times[1] > times[0]


def test_each_tunable_constant_has_one_home():
    """Tests patch a constant where it is read; a copy in another module would make a patch miss."""
    homes = {"POLL": clock, "WRITE_TIMEOUT": links, "CACHED_CLIENTS": protocol, "KNOWN_CLIENTS": protocol,
             "IDLE_TIMEOUT": server, "BUSY_GRACE": server, "LINGER": server}
    for name, home in homes.items():
        assert [m for m in (clock, links, protocol, server) if hasattr(m, name)] == [home], name


def test_a_served_process_ends_when_its_starter_is_killed():
    """SIGKILL of whatever started ``pfmtwin emulate`` (a test runner's timeout, an OOM kill)
    cannot leave the emulator serving: it is told by the kernel (PR_SET_PDEATHSIG) and ends."""
    starter = subprocess.Popen([sys.executable, "-c", (
        "import time\nfrom control.served import Served\n"
        f"s = Served('emulate', '--listen', 'socket://127.0.0.1:0', '--speed', 'max', '--twin', {OPTIONS!r})\n"
        "print(s.proc.pid, flush=True)\ntime.sleep(120)\n")], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        served = int(starter.stdout.readline())
        starter.send_signal(signal.SIGKILL)
        starter.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and alive(served):
            time.sleep(0.1)
        assert not alive(served), "the emulator outlived the process that started it"
    finally:
        if starter.poll() is None:
            starter.kill()
        starter.stdout.close()
