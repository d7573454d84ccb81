"""The emulator's clock: simpy time at ``--speed`` times real time, and prompt shutdown.

Behind the emulator the twin's processes run on :class:`ScaledRealtime` (or on a plain
``simpy.Environment`` with ``--speed max``). Nothing in the emulator waits longer than ``POLL``
without looking whether the server is shutting down; a command cut short that way raises
:class:`Stopped`.
"""

from __future__ import annotations

import threading
import time
from time import monotonic

import simpy
import simpy.rt

from control.urls import number_in

#: How long one wait (a read, a sleep of the clock) lasts before the loop checks for shutdown, s.
POLL = 0.05


def parse_speed(text: str) -> float | None:
    """``--speed``: a factor in (0, 1e6] (1 = real time), or "max" (None: no waiting).

    Raises:
        ValueError: anything else, naming the value and the accepted form.
    """
    if text == "max":
        return None
    value = number_in(text, 0.0, 1e6)
    if value is None:
        raise ValueError(f"speed={text!r} must be a factor in (0, 1e6] (1 = real time) or 'max'")
    return value


class Stopped(Exception):
    """The server is shutting down: the command being executed is abandoned."""


class ScaledRealtime(simpy.rt.RealtimeEnvironment):
    """simpy's real-time environment whose ``sync`` also moves the simulated reference time.

    ``RealtimeEnvironment.sync`` resets only the wall-clock reference, so after the instrument
    sat idle at simulated time t the next event would wait t * factor seconds. Here ``sync``
    re-anchors both clocks at the current moment. ``step`` waits in slices of at most ``POLL``
    and raises :class:`Stopped` once ``stop`` is set, so a long command (a slow move at real
    time) cannot keep a server from shutting down.
    """

    stop: threading.Event | None = None

    def step(self) -> None:
        due = self.peek()
        if due != simpy.core.Infinity:
            wake = self.real_start + (due - self.env_start) * self.factor
            while (delay := wake - monotonic()) > 0:
                if self.stop is not None and self.stop.is_set():
                    raise Stopped("the emulator is shutting down")
                time.sleep(min(delay, POLL))
        super().step()

    def sync(self) -> None:
        self.env_start = self.now
        self.real_start = monotonic()

    def catch_up(self) -> None:
        """Let simulated time pass for the wall time spent idle since the last event, then sync.

        The instrument does not stop while nobody talks to it: thermal drift goes on.
        """
        due = self.env_start + (monotonic() - self.real_start) / self.factor
        if due > self.now:
            self.run(until=due)
        self.sync()
