"""A served ``pfmtwin`` process (``emulate``, ``cosim``) started as a user starts it, and stopped.

One launcher for every scenario that needs an instrument on the wire: it starts the command in
a subprocess, reads the address it announces on its first stdout line (``{"listening": URL}`` or
``{"pty": PATH}``), and on stop sends SIGTERM, waits (SIGKILL after 30 s) and returns the JSON
statistics the command printed last on stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import control


class Served:
    """``pfmtwin COMMAND ARGS...`` in a subprocess; a context manager that stops it on exit.

    Attributes:
        url: what the command announced (a ``socket://`` URL or a pty path).
        address: (host, port) for a socket, None for a pty.
        stats: the JSON object the command printed last on stderr, once stopped.

    Raises:
        control.InstrumentError: the command ended before announcing an address.
    """

    def __init__(self, command: str, *args: str) -> None:
        self._err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "scenarios.cli", command, *args],
                                     stdout=subprocess.PIPE, stderr=self._err, text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise control.InstrumentError(f"pfmtwin {command} {' '.join(args)} did not start")
        announced = json.loads(line)
        self.url = announced.get("listening") or announced["pty"]
        self.address: tuple[str, int] | None = None
        if self.url.startswith("socket://"):
            host, port = self.url.removeprefix("socket://").rsplit(":", 1)
            self.address = (host, int(port))
        self.stats: dict = {}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> dict:
        """SIGTERM, wait (SIGKILL after 30 s); return the statistics it printed on stderr."""
        if self._err.closed:
            return self.stats
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self._err.seek(0)
        lines = [line for line in self._err.read().splitlines() if line.startswith("{")]
        self._err.close()
        self.stats = json.loads(lines[-1]) if lines else {}
        return self.stats

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def emulator(*args: str) -> Served:
    """``pfmtwin emulate ARGS`` (add ``--listen socket://127.0.0.1:0`` or ``--pty`` yourself)."""
    return Served("emulate", *args)
