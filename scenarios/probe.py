"""``pfmtwin probe``: hostile testing of the served instrument, counted.

Four families of probes, each against a real ``pfmtwin emulate`` subprocess on a loopback socket
(or, for the recording probe, a real recording process killed with SIGKILL):

- **faults**: seeded link-fault mixes (drop, corrupt, duplicate, disconnects, stalls) under a
  random script of moves, pulses, scans, clock reads and refused commands. Every result is held
  against ``twin://`` with the same options, bit for bit. ``wrong``: a result that differs;
  ``lost``: a command that failed (TransportError) although the instrument is up; ``double``:
  commands the emulator executed beyond those the client completed (a pulse applied twice);
  ``hangs``: a command that took longer than ``HANG`` s.
- **fuzz**: random byte strings, random frames with valid CRCs, and truncated valid frames, each
  on its own connection; after every batch a well-formed client must be served (``hangs``), and
  the server must still be running (``crashes``).
- **storm**: connect/disconnect cycles (close at once, after IDENTIFY, mid-frame, and whole
  sessions), then the same health check; no command is executed by them.
- **kill9**: a process records a session (``control.recording.Recorder``) and announces each
  command it completed; it is killed with SIGKILL at a random moment. ``lost``: announced
  commands missing from the file read back.

Prints one JSON object; exit status 1 if any count of wrong, double, lost, hangs or crashes is
not zero. The same seed gives the same scripts, faults and blobs (the kill times and the
interleaving with the operating system are not the seed's).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import control
from control import TransportError, wire
from control.serial_client import SerialClient
from control.served import Served
from control.wire import Cmd

#: A command taking longer than this (s) counts as a hang.
HANG = 60.0
#: The twin behind every emulator the probe starts.
TWIN = "seed=4&grid=64&field=5e-7"
#: The scan of the fault-mix scripts.
SMALL = control.ScanSpec(center=(0.25e-6, 0.25e-6), size=(0.3e-6, 0.3e-6), pixels=(8, 8), line_rate=10.0)


@dataclass(frozen=True)
class Mix:
    """One link-fault mix: the ``--faults`` plan and how many commands run through it."""

    name: str
    faults: str
    commands: int


#: The mixes of issue 11's hostile testing: 1 % with two disconnects and a stall, 5 %, and 10 %
#: with back-to-back disconnects.
MIXES = (
    Mix("1%", "drop=0.01,corrupt=0.01,duplicate=0.01,disconnect_at=300+700,stall_at=500,stall=0.3", 1000),
    Mix("5%", "drop=0.05,corrupt=0.05,duplicate=0.05,disconnect_at=200+400,stall_at=300,stall=0.3", 600),
    Mix("10%", "drop=0.1,corrupt=0.1,duplicate=0.1,disconnect_at=100+101+102+200", 300),
)


def _emulator(*args: str) -> Served:
    """``pfmtwin emulate`` on a free loopback port, as fast as it can run."""
    return Served("emulate", "--listen", "socket://127.0.0.1:0", "--speed", "max", *args)


def script(rng: np.random.Generator, n: int) -> list[tuple[str, tuple]]:
    """``n`` random commands: clock reads, moves, pulses, scans and pulses the limits refuse."""
    ops = []
    for _ in range(n):
        kind = str(rng.choice(["now", "move", "pulse", "scan", "bad"], p=[0.4, 0.2, 0.2, 0.15, 0.05]))
        x, y = (float(v) for v in rng.uniform(0.1e-6, 0.4e-6, 2))
        args = {"move": (x, y), "pulse": (x, y, float(rng.uniform(-9, 9)), float(10 ** rng.uniform(-5, -2))),
                "bad": (x, y, 12.0, 1e-3)}.get(kind, ())
        ops.append((kind, args))
    return ops


def run_op(scope, op):
    """Run one command of :func:`script` on ``scope``; a refused pulse returns "refused"."""
    kind, args = op
    if kind == "now":
        return scope.now()
    if kind == "move":
        return scope.move_tip(*args)
    if kind == "pulse":
        return scope.apply_pulse(*args)
    if kind == "bad":
        try:
            scope.apply_pulse(*args)
        except control.LimitError:
            return "refused"
        return "accepted"  # wrong: 12 V is beyond the bias limit
    return scope.scan(SMALL)


def same_result(a, b) -> bool:
    """Whether two results are equal, scans bit for bit."""
    if isinstance(a, control.ScanResult):
        return all(a.channels[k].tobytes() == b.channels[k].tobytes() for k in b.channels) and \
            a.line_times.tobytes() == b.line_times.tobytes()
    return a == b


def fault_mix(mix: Mix, seed: int, bar: tqdm) -> dict:
    """Run ``mix.commands`` random commands through ``mix.faults``; count wrong, lost, double, hangs."""
    ops = script(np.random.default_rng(seed), mix.commands)
    out = {"mix": mix.name, "faults": mix.faults, "commands": mix.commands, "completed": 0, "wrong": 0,
           "lost": 0, "double": 0, "hangs": 0, "max_command_s": 0.0}
    executing, in_doubt = 0, 0
    with _emulator("--twin", TWIN, "--faults", mix.faults, "--fault-seed", str(seed)) as emulator, \
            control.connect("twin://?" + TWIN) as reference:
        client = SerialClient(emulator.url, timeout=0.15)
        with control.Guarded(client) as scope:
            for op in ops:
                start = time.monotonic()
                try:
                    got = run_op(scope, op)
                except TransportError:
                    out["lost"] += 1  # the instrument and the reference may now differ: stop here
                    in_doubt = int(op[0] in ("move", "pulse", "scan"))  # it may have run once
                    break
                finally:
                    elapsed = time.monotonic() - start
                    out["max_command_s"] = max(out["max_command_s"], round(elapsed, 3))
                    out["hangs"] += elapsed > HANG
                    bar.update()
                out["wrong"] += not same_result(got, run_op(reference, op))
                out["completed"] += 1
                executing += op[0] in ("move", "pulse", "scan")
        stats = emulator.stop()
    out["double"] = max(0, stats.get("executed", 0) - executing - in_doubt)
    out["executed"] = stats.get("executed")
    out["injected"] = stats.get("faults", {})
    out["client"] = dict(client.stats)
    return out


def _healthy(address: tuple[str, int], client_id: bytes, deadline_s: float = 20.0) -> bool:
    """Whether a well-formed client gets IDENTIFY and NOW answered within ``deadline_s`` (BUSY retried)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(address, timeout=deadline_s) as sock:
                sock.sendall(wire.encode(Cmd.IDENTIFY, 1, wire.pack_identify(client_id)) + wire.encode(Cmd.NOW, 2))
                decoder, answers = wire.Decoder(), {}
                while 2 not in answers and 0 not in answers:
                    data = sock.recv(65536)
                    if not data:
                        break
                    answers.update({f.seq: f for f in decoder.feed(data) if isinstance(f, wire.Frame)})
            if 2 in answers and answers[2].cmd == Cmd.ACK:
                return True
        except OSError:
            pass
        time.sleep(0.05)  # BUSY while it finishes a smuggled command, or closed: try again
    return False


def _blast(address: tuple[str, int], blob: bytes) -> None:
    try:
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(blob)
    except OSError:
        pass  # refused or reset: the server's business, checked by the health check


def fuzz(counts: dict[str, int], seed: int, bar: tqdm, batch: int = 1000) -> dict:
    """Random bytes, valid-CRC random frames and truncated frames, each on its own connection."""
    rng = np.random.default_rng(seed)
    valid = [wire.encode(Cmd.IDENTIFY, 1, wire.pack_identify(b"f" * 16)),
             wire.encode(Cmd.PULSE, 2, wire.pack_pulse(1e-7, 1e-7, 5.0, 1e-3)),
             wire.encode(Cmd.SCAN, 3, wire.pack_scan(SMALL)),
             wire.encode(Cmd.MOVE, 4, wire.pack_move(1e-7, 1e-7, 1e-6))]
    out = {**{k: 0 for k in counts}, "health_checks": 0, "hangs": 0, "crashes": 0}
    with _emulator("--twin", TWIN) as emulator:
        for kind, n in counts.items():
            for i in range(n):
                if kind == "random_bytes":
                    blob = rng.bytes(int(rng.integers(1, 300)))
                elif kind == "valid_crc_frames":
                    blob = wire.encode(Cmd.IDENTIFY, 1, wire.pack_identify(rng.bytes(16))) + wire.encode(
                        int(rng.integers(0, 0x40)), int(rng.integers(0, 0x10000)), rng.bytes(int(rng.integers(0, 60))))
                else:  # truncated
                    frame = b"".join(valid[:1] + [valid[int(rng.integers(1, len(valid)))]])
                    blob = frame[:int(rng.integers(1, len(frame)))]
                _blast(emulator.address, blob)
                out[kind] += 1
                bar.update()
                if (i + 1) % batch == 0 or i + 1 == n:
                    out["health_checks"] += 1
                    if not emulator.alive():
                        out["crashes"] += 1
                        return out
                    out["hangs"] += not _healthy(emulator.address, b"health-check-fz.")
    return out


def storm(cycles: int, bar: tqdm) -> dict:
    """Connect/disconnect cycles of four kinds; nothing may be executed, and service continues."""
    out = {"cycles": 0, "hangs": 0, "crashes": 0, "executed": 0}
    identify = wire.encode(Cmd.IDENTIFY, 1, wire.pack_identify(b"s" * 16))
    with _emulator("--twin", TWIN) as emulator:
        for i in range(cycles):
            kind = i % 4
            try:
                if kind == 3:
                    with control.connect(emulator.url) as scope:
                        scope.now()
                else:
                    with socket.create_connection(emulator.address, timeout=5) as sock:
                        if kind == 1:
                            sock.sendall(identify)
                        elif kind == 2:
                            sock.sendall(identify[: len(identify) // 2])
            except (OSError, control.PfmTwinError):
                pass  # BUSY while the previous one is leaving: the server's right
            out["cycles"] += 1
            bar.update()
        out["hangs"] += not _healthy(emulator.address, b"health-check-st.")
        out["crashes"] += not emulator.alive()
        out["executed"] = emulator.stop().get("executed")
    return out


_RECORDER = """
import sys
import control
from control.recording import Recorder
spec = control.ScanSpec(center=(2.5e-7, 2.5e-7), size=(2e-7, 2e-7), pixels=(16, 16), line_rate=10.0)
with Recorder(control.connect(sys.argv[2]), sys.argv[1]) as scope:
    for k in range(100000):
        if k % 2:
            scope.apply_pulse(2e-7 + 1e-9 * (k % 50), 2e-7, 5.0, 1e-4)
        else:
            scope.scan(spec)
        print(k + 1, flush=True)
"""


def kill9(tries: int, seed: int, bar: tqdm, folder: Path) -> dict:
    """Record, SIGKILL at a random moment, read back: no announced command may be missing."""
    from control.recording import read_session

    rng = np.random.default_rng(seed)
    out = {"tries": tries, "announced": 0, "recorded": 0, "lost": 0, "unreadable": 0, "incomplete_records": 0}
    for k in range(tries):
        path = folder / f"killed-{k:03d}.h5"
        proc = subprocess.Popen([sys.executable, "-c", _RECORDER, str(path), "twin://?" + TWIN],
                                stdout=subprocess.PIPE, text=True)
        try:
            wanted = int(rng.integers(1, 12))
            announced = 0
            for line in proc.stdout:
                announced = int(line)
                if announced >= wanted:
                    break
            time.sleep(float(rng.uniform(0, 0.05)))  # kill mid-command, mid-write, or between
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        try:
            session = read_session(path)
        except Exception as exc:  # noqa: BLE001 - a probe reports what breaks, it does not stop at it
            out["unreadable"] += 1
            out["lost"] += announced
            out.setdefault("errors", []).append(f"{type(exc).__name__}: {exc}")
            continue
        recorded = sum(c.verb != "info" for c in session.commands)
        out["announced"] += announced
        out["recorded"] += recorded
        out["lost"] += max(0, announced - recorded)
        out["incomplete_records"] += len(session.incomplete)
        bar.update()
    return out


def run(seed: int = 0, scale: float = 1.0) -> dict:
    """Every probe at ``scale`` times issue 11's counts; the report as plain data.

    Raises:
        control.InvalidArgumentError: ``scale`` not in (0, 10].
    """
    if not 0 < scale <= 10:
        raise control.InvalidArgumentError(f"--scale {scale} must lie in (0, 10]; 1 runs issue 11's counts")
    mixes = [Mix(m.name, m.faults, max(10, round(m.commands * scale))) for m in MIXES]
    fuzz_counts = {"random_bytes": max(10, round(50_000 * scale)), "valid_crc_frames": max(10, round(20_000 * scale)),
                   "truncated_frames": max(10, round(5_000 * scale))}
    cycles, tries = max(8, round(2_300 * scale)), max(2, round(25 * scale))
    total = sum(m.commands for m in mixes) + sum(fuzz_counts.values()) + cycles + tries
    report: dict = {"probe": "hostile", "seed": seed, "scale": scale}
    started = time.monotonic()
    with tqdm(total=total, desc="probe", unit="op", file=sys.stderr) as bar, \
            tempfile.TemporaryDirectory(prefix="pfmtwin-probe-") as folder:
        report["faults"] = [fault_mix(m, seed + i, bar) for i, m in enumerate(mixes)]
        report["fuzz"] = fuzz(fuzz_counts, seed, bar, batch=max(10, round(1000 * min(scale, 1))))
        report["storm"] = storm(cycles, bar)
        report["kill9"] = kill9(tries, seed, bar, Path(folder))
    report["seconds"] = round(time.monotonic() - started, 1)
    parts = [*report["faults"], report["fuzz"], report["storm"], report["kill9"]]
    report["totals"] = {key: sum(p.get(key, 0) for p in parts)
                        for key in ("wrong", "double", "lost", "hangs", "crashes", "unreadable")}
    report["totals"]["storm_executed"] = report["storm"]["executed"]
    return report


def main(seed: int, scale: float) -> int:
    report = run(seed, scale)
    print(json.dumps(report))
    bad = any(report["totals"][k] for k in ("wrong", "double", "lost", "hangs", "crashes", "unreadable")) or \
        report["storm"]["executed"]
    return 1 if bad else 0
