"""A served ``pfmtwin`` process (``emulate``, ``cosim``) started as a user starts it, and stopped.

The one launcher for everything that needs an instrument on the wire in another process
(benchmarks, ``pfmtwin probe``, ``bench firmware``, tests). It starts ``pfmtwin COMMAND ARGS``
with this interpreter in a process group of its own, waits for the address the command
announces on stdout (``{"listening": URL}`` or ``{"pty": PATH}``, after whatever a simulator
prints first), and on stop sends SIGTERM to the group, waits, SIGKILLs whatever is left of the
group (a simulator ignores SIGTERM) and returns the JSON statistics printed last on stderr.

It runs the console script's entry point by name and imports nothing above ``control``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from control.errors import InstrumentError

#: The ``pfmtwin`` console script, run with this interpreter (pyproject's ``[project.scripts]``).
PFMTWIN = (sys.executable, "-m", "scenarios.cli")


def _capture(mode: str) -> tuple:
    """A temporary file read here, and a separate appending descriptor for the child to write."""
    fd, path = tempfile.mkstemp(prefix="pfmtwin-served-")
    try:
        child = os.open(path, os.O_WRONLY | os.O_APPEND)
    finally:
        os.unlink(path)  # both descriptors keep it; nothing is left on disk
    return os.fdopen(fd, "r" + mode), child


def _die_with_parent() -> None:
    """In the child: SIGTERM when the process that started it dies, even by SIGKILL (Linux)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Served:
    """``pfmtwin COMMAND ARGS...`` in a subprocess; a context manager that stops it on exit.

    Args:
        command: the ``pfmtwin`` sub-command, e.g. "emulate" or "cosim".
        args: its arguments (include ``--listen socket://127.0.0.1:0`` or ``--pty``).
        start_timeout: how long to wait for the address, s (a co-simulation first builds the RTL).
        stop_timeout: how long SIGTERM is given before SIGKILL, s.

    Attributes:
        url: what the command announced (a ``socket://`` URL or a pty path).
        address: (host, port) for a socket, None for a pty.
        proc: the ``subprocess.Popen`` (its pid leads the process group).
        stats: the JSON object the command printed last on stderr, once stopped.
        stderr: all it printed on stderr, once stopped.

    Raises:
        InstrumentError: the command ended, or did not announce an address within
            ``start_timeout`` s; the message ends with what it printed on stderr.
    """

    def __init__(self, command: str, *args: str, start_timeout: float = 300.0, stop_timeout: float = 30.0) -> None:
        self.stop_timeout = stop_timeout
        self.stats: dict = {}
        self.stderr = ""
        # Files, not pipes: nothing the process prints later can fill a pipe nobody reads. The
        # child writes through its own appending descriptor: sharing one file offset with our
        # reads, its lines could land where we had just seeked to.
        self._out, child_out = _capture("b")
        self._err, child_err = _capture("")
        try:
            self.proc = subprocess.Popen([*PFMTWIN, command, *args], stdout=child_out, stderr=child_err,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            os.close(child_out)
            os.close(child_err)
        announced = self._announcement(start_timeout)
        if announced is None:
            self.stop()
            raise InstrumentError(f"pfmtwin {command} {' '.join(args)} did not start:\n{self.stderr[-3000:]}")
        self.url: str = announced.get("listening") or announced["pty"]
        self.address: tuple[str, int] | None = None
        if self.url.startswith("socket://"):
            host, port = self.url.removeprefix("socket://").rsplit(":", 1)
            self.address = (host, int(port))

    def _announcement(self, timeout: float) -> dict | None:
        """The first stdout line that is a JSON object naming an address; None if none comes."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            ended = self.proc.poll() is not None  # read once more after an end: the line may be there
            self._out.seek(seen)
            for line in self._out.read().splitlines(keepends=True):
                if not line.endswith(b"\n"):
                    break  # still being written
                seen += len(line)
                with contextlib.suppress(ValueError):
                    announced = json.loads(line)
                    if isinstance(announced, dict) and ("listening" in announced or "pty" in announced):
                        return announced
            if ended or time.monotonic() > deadline:
                return None
            time.sleep(0.01)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> dict:
        """SIGTERM to the group, wait (then SIGKILL); return the statistics it printed on stderr."""
        if self._err.closed:
            return self.stats
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever of the group outlived the SIGTERM (a simulator ignores it) goes now.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._out.close()
        self._err.seek(0)
        self.stderr = self._err.read()
        self._err.close()
        lines = [line for line in self.stderr.splitlines() if line.startswith("{")]
        self.stats = json.loads(lines[-1]) if lines else {}
        return self.stats

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass(frozen=True)
class Finished:
    """How a ``pfmtwin`` command run by :func:`run_command` ended.

    Attributes:
        returncode: its exit status (negative: the signal that ended it); None if it timed out.
        timed_out: it ran past the timeout and its process group was killed.
        seconds: wall time it ran, s.
        stdout, stderr: what it printed (stderr: the last 20,000 characters).
    """

    returncode: int | None
    timed_out: bool
    seconds: float
    stdout: str
    stderr: str


def run_command(command: str, *args: str, timeout: float) -> Finished:
    """Run ``pfmtwin COMMAND ARGS...`` to its end, or kill its whole process group after ``timeout`` s.

    For work that may crash or hang (a stress run): it runs in a process group of its own that
    ends with the caller (even by SIGKILL), and on a timeout every process it started goes too.
    """
    out, child_out = _capture("")
    err, child_err = _capture("")
    started = time.monotonic()
    try:
        proc = subprocess.Popen([*PFMTWIN, command, *args], stdout=child_out, stderr=child_err, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent)
    finally:
        os.close(child_out)
        os.close(child_err)
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # The command's children (an emulator it served) go with it, on every path.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with out, err:
        stdout, stderr = out.read(), err.read()
    return Finished(returncode=None if timed_out else proc.returncode, timed_out=timed_out,
                    seconds=time.monotonic() - started, stdout=stdout, stderr=stderr[-20000:])
