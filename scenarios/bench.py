"""Benchmarks: commands that print one JSON object. Run by hand; never timed asserts in tests."""

from __future__ import annotations

import os
import platform
import statistics
import time

import control


def _times(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_twin(url: str = "twin://?seed=7", repeat: int = 10) -> dict:
    """Seconds for a 256 x 256 three-channel scan and for one 0.25 ms pulse with relaxation."""
    t = time.perf_counter()
    scope = control.connect(url)
    open_time = time.perf_counter() - t
    with scope:
        spec = control.ScanSpec(center=(1e-6, 1e-6), size=(1e-6, 1e-6), pixels=(256, 256), line_rate=1.0)
        scope.scan(spec)  # warm-up (caches, JIT)
        scans = _times(lambda: scope.scan(spec), repeat)
        sites = iter([(0.6e-6 + 0.08e-6 * (k % 10), 0.6e-6 + 0.08e-6 * (k // 10)) for k in range(1000)])
        scope.apply_pulse(0.5e-6, 0.5e-6, 7.74, 0.25e-3)  # warm-up
        pulses = _times(lambda: scope.apply_pulse(*next(sites), 7.74, 0.25e-3), repeat)
    scan_s, pulse_s = statistics.median(scans), statistics.median(pulses)
    real_scan_s = spec.duration  # 256 lines at 1 Hz
    return {
        "benchmark": "twin",
        "url": url,
        "open_s": round(open_time, 4),
        "scan_256x256_s": round(scan_s, 5),
        "scan_256x256_min_s": round(min(scans), 5),
        "pulse_0.25ms_with_relaxation_s": round(pulse_s, 5),
        "pulse_0.25ms_max_s": round(max(pulses), 5),
        "real_instrument_scan_s": real_scan_s,
        "scan_speedup": round(real_scan_s / scan_s),
        "repeat": repeat,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
