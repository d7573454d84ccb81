"""Agents that learn to shape domain walls: Gymnasium environments over any ``control`` backend,
SVPG in torch, the asynchronous Dask trainer and surrogate models.

Importing this package registers ``pfmtwin/DomainWall-v0`` with Gymnasium. ``learning`` reaches
instruments only through ``control.connect(url)`` (an import-linter contract enforces it).
"""

from __future__ import annotations

import gymnasium

ENV_ID = "pfmtwin/DomainWall-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="learning.env:DomainWallEnv")
