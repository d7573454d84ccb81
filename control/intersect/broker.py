"""A Mosquitto broker (MQTT 5) on loopback, started and stopped with a ``with`` block.

For tests, benchmarks and a laptop session (``pfmtwin serve --intersect local``). Mosquitto is
Debian's ``mosquitto`` package, which ``make`` installs when it is missing. The broker keeps
nothing on disk, listens on 127.0.0.1 only and accepts anonymous clients; it runs in its own
process group and, started from the main thread, dies with the process that started it (Linux),
on every path (a restart from another thread is stopped by :meth:`Mosquitto.stop`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from control.errors import InstrumentError

#: Where Debian puts the broker (not on a normal user's PATH).
SEARCH = ("/usr/sbin", "/usr/local/sbin", "/usr/bin")


def mosquitto_path() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path=os.pathsep.join(SEARCH))
    if found is None:
        raise InstrumentError("mosquitto (the MQTT broker) is not installed; run `make setup` "
                              "(it installs Debian's mosquitto) or `apt-get install mosquitto`")
    return found


def _me() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _own_group() -> None:
    os.setsid()


def _die_with_parent() -> None:
    """In the child: its own process group, and SIGTERM when the parent dies (Linux's
    PR_SET_PDEATHSIG, which follows the *thread* that started it: only for the main thread)."""
    import ctypes

    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Mosquitto:
    """``mosquitto`` on ``127.0.0.1:port`` (a free port by default) until :meth:`stop`.

    Attributes:
        port: the port it listens on.
        url: ``mqtt://127.0.0.1:PORT``.
    """

    def __init__(self, port: int | None = None, start_timeout: float = 10.0) -> None:
        self._start(_free_port() if port is None else int(port), start_timeout)
        self._stopped = False

    def _start(self, port: int, start_timeout: float) -> None:
        self.port = port
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="pfmtwin-mosquitto-")
        config = os.path.join(self._dir.name, "mosquitto.conf")
        with open(config, "w") as f:
            # `user` as we are: started by root, mosquitto would switch to its own user, which
            # clears the parent-death signal, so a broker outlived a parent that was killed.
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"log_dest none\nmax_queued_messages 10000\nset_tcp_nodelay true\nuser {_me()}\n")
        self._process = subprocess.Popen([mosquitto_path(), "-c", config], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         preexec_fn=_die_with_parent if threading.current_thread() is
                                         threading.main_thread() else _own_group)
        deadline = time.monotonic() + start_timeout
        while True:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace").strip()
                self._dir.cleanup()
                raise InstrumentError(f"mosquitto exited with {self._process.returncode} on port {self.port}: {err}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                self._halt()
                raise InstrumentError(f"mosquitto did not listen on port {self.port} within {start_timeout} s")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and remove its files; idempotent."""
        self._stopped = True
        self._halt(timeout)

    def _halt(self, timeout: float = 5.0) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        if self._process.stderr is not None:
            self._process.stderr.close()
        self._dir.cleanup()

    def restart(self) -> None:
        """Stop and start again on the same port (clients reconnect; messages in flight are lost).

        Raises:
            InstrumentError: the broker was stopped for good (:meth:`stop`).
        """
        if self._stopped:
            raise InstrumentError(f"the broker on port {self.port} was stopped; start a new Mosquitto")
        self._halt()
        self._start(self.port, 10.0)

    def __enter__(self) -> Mosquitto:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
