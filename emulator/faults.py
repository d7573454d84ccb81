"""Seeded fault injection: link faults on frames, instrument faults on a command schedule.

``"drop=0.01,corrupt=0.01,delay=0.002,duplicate=0.005,disconnect_at=30,stall_at=60"``:

* ``drop``, ``corrupt``, ``duplicate``: probability per frame, in either direction, that the
  frame is lost, has one byte changed, or arrives twice;
* ``delay``: mean extra latency per outgoing frame, s (exponentially distributed, seeded);
* ``disconnect_at``, ``stall_at``: command numbers (counted from 1, every request frame
  received) at which the server drops the link after executing the command, or executes it
  and stays silent for ``stall`` s (default 1 s); several may be given as ``30+90``;
* ``drift_burst_at``, ``tip_change_at``: command numbers at which the twin's thermal drift
  jumps 100-fold for 60 s of instrument time, or the tip blunts to twice its radius.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from control.errors import UrlError

_RATES = ("drop", "corrupt", "duplicate")
_SCHEDULES = ("disconnect_at", "stall_at", "drift_burst_at", "tip_change_at")


@dataclass(frozen=True)
class FaultPlan:
    """What to break and when (see the module docstring)."""

    drop: float = 0.0
    corrupt: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    stall: float = 1.0
    disconnect_at: tuple[int, ...] = ()
    stall_at: tuple[int, ...] = ()
    drift_burst_at: tuple[int, ...] = ()
    tip_change_at: tuple[int, ...] = ()
    seed: int = 0

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> FaultPlan:
        """Parse ``"name=value,name=value"``.

        Raises:
            UrlError: unknown name or a bad value; the message lists the accepted form.
        """
        form = "drop=P,corrupt=P,duplicate=P,delay=S,stall=S,disconnect_at=N[+N],stall_at=N,drift_burst_at=N,tip_change_at=N"
        values: dict = {"seed": seed}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, value = item.partition("=")
            try:
                if name in _RATES:
                    values[name] = float(value)
                    if not 0 <= values[name] <= 1:
                        raise ValueError("a probability must be in [0, 1]")
                elif name in ("delay", "stall"):
                    values[name] = float(value)
                    if not 0 <= values[name] <= 60:
                        raise ValueError("a time must be in [0, 60] s")
                elif name in _SCHEDULES:
                    values[name] = tuple(int(v) for v in value.split("+"))
                    if min(values[name]) < 1:
                        raise ValueError("command numbers count from 1")
                else:
                    raise KeyError(name)
            except KeyError:
                raise UrlError(f"unknown fault {name!r} in {text!r}; accepted: {form}") from None
            except ValueError as exc:
                raise UrlError(f"fault {item!r} in {text!r} is invalid ({exc}); accepted: {form}") from None
        return cls(**values)

    @property
    def any_link_faults(self) -> bool:
        """Whether frames may be altered."""
        return bool(self.drop or self.corrupt or self.duplicate or self.delay)


@dataclass
class FaultInjector:
    """Applies a :class:`FaultPlan` with its own seeded generator."""

    plan: FaultPlan
    rng: np.random.Generator = field(init=False)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.plan.seed)

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def frames(self, frame: bytes) -> list[bytes]:
        """What the link delivers for one frame: nothing, a damaged copy, one or two copies."""
        p = self.plan
        if not (p.drop or p.corrupt or p.duplicate):
            return [frame]
        if self.rng.random() < p.drop:
            self._count("dropped")
            return []
        if self.rng.random() < p.corrupt:
            self._count("corrupted")
            data = bytearray(frame)
            i = int(self.rng.integers(len(data)))
            data[i] ^= int(self.rng.integers(1, 256))
            frame = bytes(data)
        if self.rng.random() < p.duplicate:
            self._count("duplicated")
            return [frame, frame]
        return [frame]

    def delay(self) -> float:
        """Latency to add to one outgoing frame, s: exponential with mean ``plan.delay`` (seeded)."""
        return float(self.rng.exponential(self.plan.delay)) if self.plan.delay else 0.0

    def scheduled(self, command_number: int) -> set[str]:
        """Scheduled faults due at this command number."""
        p = self.plan
        return {name for name in _SCHEDULES if command_number in getattr(p, name)}
