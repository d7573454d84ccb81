"""The built wheel carries what the installed package needs: co-simulation needs the RTL, and\n`pfmtwin run` / `stress` / `validate` the example scenarios and suites."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_the_rtl_that_cosim_builds(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("pfmtwin-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    rtl = {f"firmware/rtl/{p.name}" for p in (ROOT / "firmware" / "rtl").iterdir() if p.suffix in (".v", ".vh")}
    assert rtl and rtl <= names, f"missing from the wheel: {sorted(rtl - names)}"
    assert "firmware/tb/cosim_tb.py" in names
    assert not any(name.startswith("firmware/build/") for name in names), "no build output in the wheel"
    shipped = {f"scenarios/{p.relative_to(ROOT / 'scenarios')}" for p in (ROOT / "scenarios").glob("*/*.toml")}
    assert "scenarios/examples/wall-pulse.toml" in shipped and shipped <= names, \
        f"scenario files missing from the wheel: {sorted(shipped - names)}"
