"""Shared fixtures. Backend URLs for the conformance suite live here: add a backend, add a URL."""

from __future__ import annotations

import os

# numba's default OpenMP layer is not fork-safe (TOOLCHAIN.md); tests fork subprocesses.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

#: Small, fast films for tests: 64 x 64 pixels over 0.5 um (7.8 nm pixels, as the default).
SMALL_TWIN = "twin://?seed={seed}&grid=64&field=5e-7"

import pytest  # noqa: E402


@pytest.fixture
def small_twin_url() -> str:
    """A 64 x 64 twin film, fast to build."""
    return SMALL_TWIN.format(seed=3)
