"""Benchmarks: commands that print one JSON object. Run by hand; never timed asserts in tests."""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np

import control
from control.served import Served


def _times(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _image(scope, lines: int = 256) -> control.ScanSpec:
    """A 256-point image at 1 Hz, 1 um wide (or the scanner's half range if smaller), centred."""
    reach = scope.info().hardware.scan_range
    side = min(1e-6, reach / 2)
    return control.ScanSpec(center=(reach / 2, reach / 2), size=(side, side), pixels=(256, lines), line_rate=1.0)


#: Film grids of ``pfmtwin bench twin --scaling`` (pixels per side; the film side grows with them
#: at the default 7.8 nm pixel).
SCALING_GRIDS = (256, 512, 1024, 2048)


def bench_twin(url: str = "twin://?seed=7", repeat: int = 10, scaling: bool = False,
               grids: tuple[int, ...] = SCALING_GRIDS) -> dict:
    """Seconds for a 256 x 256 three-channel scan and for one 0.25 ms pulse with relaxation.

    With ``scaling``, also ``scaling``: open, scan and pulse times of films of each grid in
    ``grids`` (default :data:`SCALING_GRIDS`; ``url`` with ``grid=N`` and ``field=N x 7.8 nm``,
    at most the 10 um scanner: the 2048 grid has 4.9 nm pixels), so a user sees how the cost
    grows with the film.
    """
    out = _bench_one(url, repeat)
    if scaling:
        from control.urls import with_options

        out["scaling"] = []
        for grid in grids:
            film = min(grid * 7.8125e-9, 1e-5)  # the 7.8 nm pixels of the calibration, within the 10 um scanner
            one = _bench_one(with_options(url, grid=grid, field=f"{film:.6g}"), max(3, repeat // 2))
            out["scaling"].append({"grid": grid, "film_m": film, "pixel_m": film / grid, "open_s": one["open_s"],
                                   "scan_256x256_s": one["scan_256x256_s"],
                                   "pulse_0.25ms_with_relaxation_s": one["pulse_0.25ms_with_relaxation_s"]})
    return out


def _bench_one(url: str, repeat: int) -> dict:
    t = time.perf_counter()
    scope = control.connect(url)
    open_time = time.perf_counter() - t
    with scope:
        spec = _image(scope)
        scope.scan(spec)  # warm-up (caches, JIT)
        scans = _times(lambda: scope.scan(spec), repeat)
        (cx, cy), (side, _) = spec.center, spec.size
        sites = iter([(cx + side * (0.08 * (k % 10) - 0.4), cy + side * (0.08 * ((k // 10) % 10) - 0.4))
                      for k in range(1000)])
        scope.apply_pulse(cx, cy, 7.74, 0.25e-3)  # warm-up
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


def _round_trips(url: str, count: int) -> dict:
    with control.connect(url) as scope:
        for _ in range(20):
            scope.now()
        times = sorted(_times(scope.now, count))
    return {"median_s": round(statistics.median(times), 7), "p99_s": round(times[int(0.99 * (count - 1))], 7)}


def bench_emulator(url: str = "twin://?seed=7", repeat: int = 5) -> dict:
    """Round trips over socket and pty, the cost of moving an image, real-time lag per line."""
    twin_options = url.partition("?")[2]
    with control.connect(url) as scope:
        spec = _image(scope)
        scope.scan(spec)
        in_process = statistics.median(_times(lambda: scope.scan(spec), repeat))
    out: dict = {"benchmark": "emulator", "twin": twin_options}
    with Served("emulate", "--listen", "socket://127.0.0.1:0", "--speed", "max", "--twin", twin_options) as emu:
        out["round_trip_socket"] = _round_trips(emu.url, 1000)
        with control.connect(emu.url) as scope:
            scope.scan(spec)
            over_socket = statistics.median(_times(lambda: scope.scan(spec), repeat))
    with Served("emulate", "--pty", "--speed", "max", "--twin", twin_options) as emu:
        out["round_trip_pty"] = _round_trips(emu.url, 1000)
    out["scan_256x256_in_process_s"] = round(in_process, 5)
    out["scan_256x256_over_socket_s"] = round(over_socket, 5)
    out["image_transfer_s"] = round(over_socket - in_process, 5)
    # What crossed the socket: height, amplitude and phase as float64 (the frames add 0.2 %).
    image_bytes = 8 * spec.shape[0] * spec.shape[1] * 3 * (2 if spec.retrace else 1)
    out["image_bytes"] = image_bytes
    out["image_transfer_mb_s"] = round(image_bytes / 1e6 / max(over_socket - in_process, 1e-9), 1)

    lines = 10
    with Served("emulate", "--listen", "socket://127.0.0.1:0", "--speed", "1", "--twin", twin_options) as emu:
        with control.connect(emu.url) as scope:
            line_spec = _image(scope, lines)
            xs, ys = line_spec.positions()
            scope.move_tip(float(xs[0, 0]), float(ys[0, 0]))  # so no approach move falls inside the timing
            arrivals = []
            start_instrument = scope.now()
            start_wall = time.monotonic()
            result = scope.scan(line_spec, on_line=lambda i, t, ch: arrivals.append(time.monotonic()))
    due = start_wall + (result.line_times + 1.0 / line_spec.line_rate - start_instrument)
    lag = np.array(arrivals) - due
    out["realtime_lag_per_line_s"] = {"median": round(float(np.median(lag)), 5), "max": round(float(lag.max()), 5),
                                      "lines": lines, "line_rate_hz": 1.0, "speed": 1}
    out["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    return out


def bench_be(url: str = "twin://?seed=1&grid=256&field=2e-6", repeat: int = 3) -> dict:
    """``pfmtwin bench be``: the SHO fit against the acquisition it has to keep up with.

    Fits the spectra of a BEPS grid measured on ``url`` (3 x 3 points, 64 steps, on and off field,
    64 bins of 4 ms: 1152 spectra) ``repeat`` times, and the same number of noiseless synthetic
    spectra; reports spectra per second of the fit, of the twin's acquisition (wall clock), and
    of a real instrument (one spectrum per read-out duration).
    """
    from control.sho import fit_sho, sho
    from control.spectroscopy import Band, BEPSSpec, triangle

    band = Band(bins=64, duration=4e-3)
    with control.connect(url) as scope:
        (xlo, xhi), (ylo, yhi) = scope.limits.x_range, scope.limits.y_range
        spec = BEPSSpec.grid(((xlo + xhi) / 2, (ylo + yhi) / 2), (0.4e-6, 0.4e-6), (3, 3), triangle(8.5, 64),
                             step=1e-3, band=band)
        t0 = time.perf_counter()
        result = scope.beps(spec)
        acquire = time.perf_counter() - t0
    spectra = result.response.size // band.bins
    noisy = statistics.median(_times(lambda: fit_sho(result.frequencies, result.response), repeat))
    rng = np.random.default_rng(0)
    clean = sho(result.frequencies, rng.uniform(1e-12, 5e-11, spectra), rng.uniform(345e3, 369e3, spectra),
                rng.uniform(40, 250, spectra), rng.uniform(-np.pi, np.pi, spectra))
    noiseless = statistics.median(_times(lambda: fit_sho(result.frequencies, clean), repeat))
    return {
        "benchmark": "be", "url": url, "spectra": spectra, "bins": band.bins,
        "fit_noisy_spectra_per_s": round(spectra / noisy), "fit_noiseless_spectra_per_s": round(spectra / noiseless),
        "twin_acquisition_spectra_per_s": round(spectra / acquire),
        "instrument_spectra_per_s": round(1 / band.duration),
        "fit_keeps_up_with_the_instrument_by": round(spectra / noisy * band.duration, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
