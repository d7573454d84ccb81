"""Agents that learn to shape domain walls: Gymnasium environments over any ``control`` backend,
SVPG in torch, the asynchronous Dask trainer and surrogate models.

Importing this package registers ``pfmtwin/DomainWall-v0`` with Gymnasium: at once if Gymnasium
is already imported, else as Gymnasium's own import finishes. So the modules that need no
Gymnasium (the ``surrogate://`` backend, :mod:`learning.files`) import without it. ``learning``
reaches instruments only through ``control.connect(url)`` (an import-linter contract enforces it).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from types import ModuleType

ENV_ID = "pfmtwin/DomainWall-v0"


def _register(gymnasium: ModuleType) -> None:
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="learning.env:DomainWallEnv")


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Finds ``gymnasium`` as the other finders do, and registers the environment once it has run."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name != "gymnasium":
            return None
        sys.meta_path.remove(self)  # once: the other finders find it from now on
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module: ModuleType) -> None:
                run(module)
                _register(module)

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "gymnasium" in sys.modules:
    _register(sys.modules["gymnasium"])
else:
    sys.meta_path.insert(0, _RegisterOnImport())
