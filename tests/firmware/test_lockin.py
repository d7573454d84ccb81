"""The lock-in demodulator RTL against its bit-accurate model and the float64 reference (cocotb)."""

from __future__ import annotations

import json

import pytest

from firmware.runner import run

SOURCES = ["lockin_top.v", "lockin.v", "nco.v", "lockin_sine_rom.v", "cordic.v", "lockin_atan_rom.v", "lockin_div.v"]


@pytest.mark.parametrize(
    ("sample_div", "cases", "extremes"),
    [
        (4, 100, True),  # a sample every 4 clocks keeps the run short; the NCO steps per sample
        (25, 10, False),  # the real 4 MHz ADC at the 100 MHz clock
    ],
)
def test_lockin_rtl(sample_div, cases, extremes):
    results = run(
        "lockin_top",
        SOURCES,
        "firmware.tb.lockin_tb",
        parameters={"SAMPLE_DIV": sample_div},
        extra_env={
            "LOCKIN_SEED": str(350_000 + sample_div),
            "LOCKIN_CASES": str(cases),
            "LOCKIN_EXTREMES": "1" if extremes else "0",
        },
    )
    summary = json.loads((results.parent / "lockin_summary.json").read_text())
    assert summary["cases"] == cases and summary["pixels"] == 3 * cases
    print(json.dumps(summary))
