"""Shared fixtures. Backend URLs for the conformance suite live here: add a backend, add a URL."""

from __future__ import annotations

import contextlib
import os
import time

# numba's default OpenMP layer is not fork-safe (TOOLCHAIN.md); tests fork subprocesses.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

#: Small, fast films for tests: 64 x 64 pixels over 0.5 um (7.8 nm pixels, as the default).
SMALL_TWIN = "twin://?seed={seed}&grid=64&field=5e-7&init=wall&scanner=closed&texture=0"

import pytest  # noqa: E402

from control import ScanResult  # noqa: E402


def assert_scans_equal(got: ScanResult, want: ScanResult) -> None:
    """Same spec, channels, coordinates and line times, bit for bit."""
    assert got.spec == want.spec
    assert list(got.channels) == list(want.channels)
    for name, array in want.channels.items():
        assert got.channels[name].dtype == array.dtype
        assert got.channels[name].tobytes() == array.tobytes(), name
    for name in ("x", "y", "line_times"):
        assert getattr(got, name).shape == getattr(want, name).shape, name
        assert getattr(got, name).tobytes() == getattr(want, name).tobytes(), name


@pytest.fixture
def small_twin_url() -> str:
    """A 64 x 64 twin film, fast to build."""
    return SMALL_TWIN.format(seed=3)


class RunningEmulator:
    """An emulator served from a thread of this process on a real loopback socket (or pty)."""

    def __init__(self, twin_options: str, speed: float | None = None, faults: str = "", pty: bool = False,
                 port: int = 0):
        import threading

        from emulator.faults import FaultPlan
        from emulator.protocol import Emulator
        from emulator.server import Server

        plan = FaultPlan.parse(faults, seed=1) if faults else None
        self.server = Server(Emulator("twin://?" + twin_options, speed=speed, faults=plan))
        if pty:
            self.url = self.server.open_pty()
        else:
            host, port = self.server.listen_tcp("127.0.0.1", port)
            self.url = f"socket://{host}:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def emulator(self):
        return self.server.emulator

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture
def emulators():
    """Factory: ``emulators("seed=3&grid=64", speed=None, faults="")`` -> a running emulator."""
    started: list[RunningEmulator] = []

    def start(twin_options: str, **kwargs) -> RunningEmulator:
        started.append(RunningEmulator(twin_options, **kwargs))
        return started[-1]

    yield start
    for e in started:
        e.stop()


def descendants(pid: int) -> set[int]:
    """Every live (not zombie) process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return {p for p in found if alive(p)}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended and only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running():
    """The suite leaves no process behind: every emulator, simulator and worker it started ends."""
    yield
    deadline = time.monotonic() + 10  # processes being shut down get a moment
    while (left := _started_by_tests()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes the tests started are still running: {left}"


#: Helpers of the Python standard library that live exactly as long as this process (they exit
#: when its end of their pipe closes), e.g. the resource tracker Dask's process pool starts.
_STDLIB_HELPERS = (b"multiprocessing.resource_tracker", b"multiprocessing.forkserver")


def _started_by_tests() -> dict[int, str]:
    """The live processes below this one, with their command lines, less the stdlib helpers."""
    out = {}
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read()
            if not any(helper in command for helper in _STDLIB_HELPERS):
                out[pid] = command.replace(b"\0", b" ").decode(errors="replace")[:160]
    return out


@pytest.fixture(scope="session")
def wall_policy(tmp_path_factory):
    """A DomainWall-v0 policy trained (briefly) on a small twin by the real ``pfmtwin agent train``."""
    import json
    import subprocess
    import sys

    import numpy as np

    out = tmp_path_factory.mktemp("agent") / "wall.pt"
    kwargs = {"microscope": SMALL_TWIN.format(seed=1), "max_steps": 3}
    p = subprocess.run([sys.executable, "-m", "scenarios.cli", "agent", "train", "--env", "pfmtwin/DomainWall-v0",
                        "--env-kwargs", json.dumps(kwargs), "--algo", "svpg", "--particles", "2", "--steps", "12",
                        "--seed", "5", "--mode", "serial", "--episodes", "1", "--eval-episodes", "1",
                        "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert np.isfinite(summary["mean_return"])
    return out


@pytest.fixture(scope="module")
def mosquitto():
    """One Mosquitto broker (MQTT 5) on a free loopback port for a test module, stopped at its end
    (not at the session's: other modules check that nothing they did not start is running)."""
    from control.intersect.broker import Mosquitto

    with Mosquitto() as broker:
        yield broker


class OnTheBus:
    """A backend offered as an INTERSECT microscope service, in this process, on ``broker``
    (``control.intersect.service.on_the_bus``, entered here and left by :meth:`stop`)."""

    count = 0

    def __init__(self, backend_url: str, broker) -> None:
        from control.intersect.service import on_the_bus

        OnTheBus.count += 1
        self._running = on_the_bus(broker.url, f"pfmtwin.tests.pfm.-.scope-{os.getpid()}-{OnTheBus.count}",
                                   backend=backend_url)
        served = self._running.__enter__()
        self.url, self.capability = served.url, served.microscope

    def stop(self) -> None:
        self._running.__exit__(None, None, None)


@pytest.fixture
def intersect_services(mosquitto):
    """Factory: ``intersect_services("twin://?seed=3")`` -> a service (``.url``: its ``intersect://`` URL)."""
    started: list[OnTheBus] = []

    def start(backend_url: str) -> OnTheBus:
        started.append(OnTheBus(backend_url, mosquitto))
        return started[-1]

    yield start
    for s in started:
        s.stop()
