"""A CostlyEpisodes environment that appends one byte to a file per step, so a test can count
the environment steps a training *ran* (in this process or in Dask workers), not only those it
reports. Imported by Gymnasium (``"tests.learning.counting:pfmtwin-test/Counting-v0"``) in any
process, Dask workers included."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from learning.bench import CostlyEpisodesEnv

#: Gymnasium id; the module prefix makes every process import (and so register) it first.
COUNTING_ENV_ID = "tests.learning.counting:pfmtwin-test/Counting-v0"


class CountingEnv(CostlyEpisodesEnv):
    """:class:`learning.bench.CostlyEpisodesEnv` that appends a byte to ``log`` on every step."""

    def __init__(self, log: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log = log

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        with open(self.log, "ab") as f:
            f.write(b".")
        return super().step(action)


if "pfmtwin-test/Counting-v0" not in gymnasium.registry:
    gymnasium.register(id="pfmtwin-test/Counting-v0", entry_point="tests.learning.counting:CountingEnv",
                       max_episode_steps=100_000)
