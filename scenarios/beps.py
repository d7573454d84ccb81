"""``pfmtwin beps``: a BEPS grid on any backend, fitted, written as NSID, held against real loops.

The measurement runs through ``control.connect`` one grid row per command (a progress bar per
row), with the waveform of the real data set when one is given (``--real``: the PbTiO3 BEPS
file in tests/data, 0 -> 8.5 -> 0 -> -8.5 -> 0 V in 64 steps). Every spectrum is fitted with
the SHO (:func:`control.sho.fit_sho`) and the off-field loops are read with
:func:`control.sho.loop_metrics`. Written to ``--out``: ``beps.h5`` (NSID, sidpy-readable),
``beps.json`` (the metrics of both and their comparison) and ``beps.png``.

Comparing with measured loops: the file's loops are in the instrument's own units (a.u.), so
shapes are compared after normalizing each loop by its saturation (the response at the most
positive and most negative bias: -1 to +1); biases (coercive, imprint) are compared in V. Single
steps of the measured loops jump by 10-1000x (failed fits in the original processing); a 3-step
running median along the bias removes them before anything is read (``despike``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

import control
from control.nsid_be import Loops, read_beps, write_beps
from control.sho import fit_sho, loop_metrics, projected_loops
from control.spectroscopy import Band, BEPSResult, BEPSSpec, triangle

#: The waveform when no real file gives one: that of the PbTiO3 data set.
DEFAULT_DC = triangle(8.5, 64)


def despike(loops: np.ndarray) -> np.ndarray:
    """A 3-step running median along the bias (cyclic: the waveform is a cycle)."""
    return ndimage.median_filter(np.asarray(loops, dtype=float), size=(1, 3), mode="wrap")


def normalized(dc: np.ndarray, loops: np.ndarray) -> np.ndarray:
    """Each loop oriented to rise with the bias and scaled so its saturations are +1 and -1."""
    m = loop_metrics(dc, loops)
    top, bottom = np.asarray(m.saturation_positive), np.asarray(m.saturation_negative)
    slope = np.sum(np.diff(loops, axis=1) * np.sign(np.diff(dc)), axis=1)
    oriented = loops * np.where(slope >= 0, 1.0, -1.0)[:, None]
    half = (top - bottom) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(half[:, None] > 0, (oriented - ((top + bottom) / 2)[:, None]) / half[:, None], np.nan)


def describe(dc: np.ndarray, loops: np.ndarray) -> dict:
    """Loop metrics of a set of loops, with their normalized mean loop and remanence."""
    metrics = loop_metrics(dc, loops)
    shape = normalized(dc, loops)
    with np.errstate(invalid="ignore"):
        remanence = (np.asarray(metrics.remanent_positive) - np.asarray(metrics.remanent_negative)) / (
            np.asarray(metrics.saturation_positive) - np.asarray(metrics.saturation_negative))
    finite = remanence[np.isfinite(remanence)]
    return {**metrics.summary(), "points": int(len(loops)),
            "remanence_ratio": {"median": float(np.median(finite)) if finite.size else float("nan")},
            "mean_loop": [float(v) for v in np.nanmedian(shape, axis=0)]}


def compare(twin: dict, real: dict) -> dict:
    """Differences that matter to a microscopist: biases in V, fractions, and the loop shape."""
    out = {}
    for key in ("coercive_positive_V", "coercive_negative_V", "imprint_V", "coercive_width_V"):
        out[key] = {"twin": twin[key]["median"], "real": real[key]["median"],
                    "difference": twin[key]["median"] - real[key]["median"], "real_iqr": real[key]["iqr"]}
    out["switched_fraction"] = {"twin": twin["switched_fraction"], "real": real["switched_fraction"]}
    out["remanence_ratio"] = {"twin": twin["remanence_ratio"]["median"], "real": real["remanence_ratio"]["median"]}
    a, b = np.asarray(twin["mean_loop"]), np.asarray(real["mean_loop"])
    out["mean_loop_rms_difference"] = float(np.sqrt(np.nanmean((a - b) ** 2))) if a.shape == b.shape else None
    return out


def measure(url: str, spec_rows: list[BEPSSpec]) -> BEPSResult:
    """Run the rows of a grid through the contract, one command per row, and join them."""
    results = []
    with control.connect(url) as scope, tqdm(total=len(spec_rows), desc="BEPS", unit="row", file=sys.stderr,
                                             disable=None) as bar:
        for row in spec_rows:
            results.append(scope.beps(row))
            bar.update()
    points = tuple(p for r in results for p in r.spec.points)
    spec = BEPSSpec(points=points, dc=spec_rows[0].dc, step=spec_rows[0].step, band=spec_rows[0].band)
    return BEPSResult(spec=spec, frequencies=results[0].frequencies,
                      response=np.concatenate([r.response for r in results]),
                      times=np.concatenate([r.times for r in results]))


def grid_rows(center, size, pixels, dc, step: float, band: Band) -> list[BEPSSpec]:
    spec = BEPSSpec.grid(center, size, pixels, dc, step=step, band=band)
    nx = pixels[0]
    return [BEPSSpec(points=spec.points[i:i + nx], dc=spec.dc, step=step, band=band)
            for i in range(0, len(spec.points), nx)]


def picture(dc: np.ndarray, twin_loops: np.ndarray, real: Loops | None, path: Path) -> Path:
    import matplotlib.pyplot as plt

    sets = [("twin", twin_loops, "tab:red")]
    if real is not None:
        sets.append(("real PbTiO3", despike(real.loops), "tab:blue"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, loops, colour in sets:
        v = dc if name == "twin" else real.dc
        shape = normalized(v, loops)
        lo, mid, hi = np.nanpercentile(shape, [25, 50, 75], axis=0)
        closed = np.r_[np.arange(len(v)), 0]
        axes[0].plot(v[closed], mid[closed], color=colour, label=f"{name} (median, {len(loops)} points)")
        for q in (lo, hi):
            axes[0].plot(v[closed], q[closed], color=colour, lw=0.7, ls="--", alpha=0.6)
        m = loop_metrics(v, loops)
        bins = np.linspace(-9, 9, 37)
        for ax, values, label in ((axes[1], m.coercive_positive, name), (axes[1], m.coercive_negative, None),
                                  (axes[2], m.imprint, name)):
            values = np.asarray(values).ravel()
            ax.hist(values[np.isfinite(values)], bins=bins, color=colour, alpha=0.45, density=True, label=label)
    axes[0].set(xlabel="DC bias (V)", ylabel="off-field response / saturation", title="loops (median; dashed: IQR)")
    axes[1].set(xlabel="coercive bias (V)", ylabel="density", title="coercive biases, both branches")
    axes[2].set(xlabel="imprint (V)", title="imprint")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(url: str, out: Path, *, real: str | None = None, pixels=(8, 8), size=(0.8e-6, 0.8e-6),
        center: tuple[float, float] | None = None, step: float = 1e-3, band: Band | None = None) -> dict:
    """Measure a BEPS grid on ``url``, fit, write ``beps.h5``, ``beps.json``, ``beps.png`` in ``out``."""
    real_loops = read_beps(real) if real is not None else None
    dc = tuple(float(v) for v in real_loops.dc) if real_loops is not None else DEFAULT_DC
    band = band or Band(bins=32, duration=2e-3)
    if center is None:
        with control.connect(url) as scope:
            (xlo, xhi), (ylo, yhi) = scope.limits.x_range, scope.limits.y_range
        center = ((xlo + xhi) / 2, (ylo + yhi) / 2)
    result = measure(url, grid_rows(center, size, pixels, dc, step, band))
    fit = fit_sho(result.frequencies, result.response)
    out.mkdir(parents=True, exist_ok=True)
    write_beps(out / "beps.h5", result, fit, metadata={"backend": url}, overwrite=True)
    loops = projected_loops(fit)[:, :, 1]  # off-field
    twin = describe(np.asarray(dc), loops)
    summary = {"backend": url, "pixels": list(pixels), "size_m": list(size), "center_m": list(center), "step_s": step,
               "band": band.to_dict(), "twin": twin,
               "sho": {"frequency_Hz_median": float(np.nanmedian(fit.frequency)),
                       "quality_median": float(np.nanmedian(fit.quality)),
                       "r2_median": float(np.nanmedian(fit.r2))}}
    if real_loops is not None:
        measured = describe(real_loops.dc, despike(real_loops.loops))
        summary.update(real=measured, real_file=str(real), comparison=compare(twin, measured))
    (out / "beps.json").write_text(json.dumps(summary, indent=2))
    picture(np.asarray(dc), loops, real_loops, out / "beps.png")
    return summary
