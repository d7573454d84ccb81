"""``pfmtwin realism``: do a backend's images look like real PFM scans, statistic by statistic?

For every real scan (NSID files, read by :mod:`control.nsid`) and every backend URL, the
backend scans an image of the same size, pixels and line rate (raster) and both images go
through the statistics panel of :mod:`control.analysis`. A backend passes when each of its
values of each checked statistic lies inside the range the real scans span (min to max, not
widened). Exit status 0: all inside; 1: something outside (usable in CI); 2: bad input.

Checked statistics (:data:`UNCHECKED` lists the exceptions): every statistic of the panel but
``phase_up`` and ``phase_down``. The absolute phase of each state is the lock-in's phase offset,
a setting the operator chooses (Asylum ``PhaseOffset``), not a property of the film or the
instrument, so real scans cannot say what it should be; ``phase_separation`` and
``phase_scatter`` carry the phase physics and are checked. A statistic that no real scan
defines (NaN in all of them) is not checked either. ``--statistics`` picks the set by hand.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

import control
from control.analysis import STATISTICS, image_statistics, statistic
from control.nsid import read_scans

#: Statistics of the panel that real scans cannot define, and why.
UNCHECKED = {
    "phase_up": "absolute phase = the lock-in phase offset, an operator setting",
    "phase_down": "absolute phase = the lock-in phase offset, an operator setting",
}
#: What is checked unless --statistics says otherwise.
DEFAULT_STATISTICS = tuple(name for name in STATISTICS if name not in UNCHECKED)


@dataclass
class Backend:
    """One backend's scans, each matching one real scan, and their panels."""

    url: str
    center: tuple[float, float]
    scans: list[control.ScanResult] = field(default_factory=list)
    values: list[dict[str, float]] = field(default_factory=list)


def parse_statistics(text: str | None) -> tuple[str, ...]:
    """The statistics to check from ``--statistics a,b`` (None: :data:`DEFAULT_STATISTICS`).

    Raises:
        control.analysis.UnknownStatisticError: a name is not in the panel.
    """
    if text is None:
        return DEFAULT_STATISTICS
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        statistic(name)  # raises, naming the accepted ones
    if not names:
        raise control.InvalidArgumentError(f"--statistics {text!r} names no statistic; use e.g. pixel_noise,line_cv")
    return names


def matching_spec(real: control.ScanResult, center: tuple[float, float]) -> control.ScanSpec:
    """A raster scan of the real scan's size, pixels and line rate, centred at ``center`` (m)."""
    return control.ScanSpec(center=center, size=real.spec.size, pixels=real.spec.pixels,
                            line_rate=real.spec.line_rate, path="raster")


def _range(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    return (min(finite), max(finite)) if finite else (math.nan, math.nan)


def _inside(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]  # False for NaN: an undefined value matches nothing


def _plain(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None  # JSON has no NaN


def scan_backends(reals: list[tuple[Path, control.ScanResult]], urls: list[str],
                  center: tuple[float, float] | None) -> list[Backend]:
    """Scan, on every backend, an image matching each real scan; compute every panel.

    Args:
        reals: (file, scan) of each real scan.
        urls: backend URLs, each opened once with ``control.connect``.
        center: image centre (x, y), m; None: the middle of each scanner's range.
    """
    backends = []
    with tqdm(total=len(urls) * len(reals), desc="realism", unit="scan", file=sys.stderr) as bar:
        for url in urls:
            with control.connect(url) as scope:
                middle = scope.info().hardware.scan_range / 2
                backend = Backend(url, tuple(center) if center is not None else (middle, middle))
                for path, real in reals:
                    bar.set_postfix_str(f"{url} like {path.name}")
                    scan = scope.scan(matching_spec(real, backend.center))
                    backend.scans.append(scan)
                    backend.values.append(image_statistics(scan))
                    bar.update()
            backends.append(backend)
    return backends


def report(reals: list[tuple[Path, control.ScanResult]], real_values: list[dict[str, float]],
           backends: list[Backend], checked: tuple[str, ...]) -> dict:
    """Everything as plain data: values per scan, ranges, and what falls outside."""
    real_range = {name: _range([v[name] for v in real_values]) for name in STATISTICS}
    undefined = [name for name in checked if not math.isfinite(real_range[name][0])]
    checked = tuple(name for name in checked if name not in undefined)
    out = {
        "statistics": {name: {"unit": unit, "definition": definition, "checked": name in checked}
                       for name, (unit, definition) in STATISTICS.items()},
        "checked": list(checked),
        "unchecked": {name: UNCHECKED.get(name, "not asked for") for name in STATISTICS
                      if name not in checked and name not in undefined},
        "undefined_by_real_scans": undefined,
        "real": [{"file": str(path), "spec": scan.spec.to_dict(), "values": {k: _plain(v) for k, v in values.items()}}
                 for (path, scan), values in zip(reals, real_values)],
        "real_range": {name: [_plain(lo), _plain(hi)] for name, (lo, hi) in real_range.items()},
        "backends": [],
        "outside": {},
    }
    for backend in backends:
        bounds = {name: _range([v[name] for v in backend.values]) for name in STATISTICS}
        outside = [name for name in checked if not all(_inside(v[name], real_range[name]) for v in backend.values)]
        out["backends"].append({
            "url": backend.url,
            "center": list(backend.center),
            "scans": [{"like": str(path), "spec": scan.spec.to_dict(), "values": {k: _plain(x) for k, x in v.items()},
                       "outside": [name for name in checked if not _inside(v[name], real_range[name])]}
                      for (path, _), scan, v in zip(reals, backend.scans, backend.values)],
            "range": {name: [_plain(lo), _plain(hi)] for name, (lo, hi) in bounds.items()},
            "outside": outside,
        })
        out["outside"][backend.url] = outside
    out["exit_status"] = 1 if any(out["outside"].values()) else 0
    return out


def _span(bounds: list[float | None]) -> str:
    lo, hi = (math.nan if b is None else b for b in bounds)
    return "nan" if not math.isfinite(lo) else f"{lo:.4g}" if lo == hi else f"{lo:.4g} - {hi:.4g}"


def table(data: dict) -> str:
    """The comparison as a text table: statistic | unit | real range | each backend's range, markers."""
    head = ["statistic", "unit", "real range", *(b["url"] for b in data["backends"])]
    rows = []
    for name, meta in data["statistics"].items():
        row = [name if meta["checked"] else f"({name})", meta["unit"], _span(data["real_range"][name])]
        for b in data["backends"]:
            mark = " OUTSIDE" if name in b["outside"] else ""
            undefined = sum(scan["values"][name] is None for scan in b["scans"])
            note = f" ({undefined} undefined)" if undefined and _span(b["range"][name]) != "nan" else ""
            row.append(_span(b["range"][name]) + note + mark)
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    lines.append("(name): not checked. " + "; ".join(f"{b['url']}: {len(b['outside'])} of {len(data['checked'])} "
                                                    f"checked statistics outside" for b in data["backends"]))
    return "\n".join(lines)


def picture(reals: list[tuple[Path, control.ScanResult]], backends: list[Backend], path: Path) -> Path:
    """One row per real scan: its amplitude and phase, then each backend's, side by side.

    Amplitudes of a row share one colour scale (1st-99th percentile of the row's amplitudes),
    every phase image the scale -90 to 270 deg; axes in um.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 2 * (1 + len(backends))
    fig, axes = plt.subplots(len(reals), columns, figsize=(3.4 * columns, 3.2 * len(reals)),
                             squeeze=False, constrained_layout=True)
    for row, (file, real) in enumerate(reals):
        images = [(file.name, real)] + [(b.url, b.scans[row]) for b in backends]
        lo, hi = np.nanpercentile(np.concatenate([s.amplitude.ravel() for _, s in images]) * 1e12, [1, 99])
        for i, (title, scan) in enumerate(images):
            (cx, cy), (w, h) = scan.spec.center, scan.spec.size
            extent = [(cx - w / 2) * 1e6, (cx + w / 2) * 1e6, (cy - h / 2) * 1e6, (cy + h / 2) * 1e6]
            for j, (data, cmap, vmin, vmax, label) in enumerate((
                (scan.amplitude * 1e12, "afmhot", lo, hi, "amplitude (pm)"),
                (scan.phase, "twilight", -90.0, 270.0, "phase (deg)"),
            )):
                ax = axes[row, 2 * i + j]
                im = ax.imshow(data, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax)
                ax.set_title(f"{title}\n{label.split()[0]}", fontsize=8)
                ax.set_xlabel("x (um)", fontsize=7)
                ax.set_ylabel("y (um)", fontsize=7)
                ax.tick_params(labelsize=6)
                fig.colorbar(im, ax=ax, shrink=0.75).set_label(label, fontsize=7)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def run(reals_in: list[str], urls: list[str], out: Path, center: tuple[float, float] | None = None,
        statistics: str | None = None) -> int:
    """Compare, print the table, write ``out/realism.json`` and ``out/realism.png``.

    Returns:
        0 when every checked value of every backend lies inside the real range, else 1.

    Raises:
        control.PfmTwinError: a missing or unreadable file, a bad URL, an unknown statistic.
    """
    checked = parse_statistics(statistics)
    reals = [item for path in reals_in for item in read_scans(path)]
    real_values = [image_statistics(scan) for _, scan in reals]
    backends = scan_backends(reals, urls, center)
    data = report(reals, real_values, backends, checked)
    out.mkdir(parents=True, exist_ok=True)
    (out / "realism.json").write_text(json.dumps(data, indent=2) + "\n")
    picture(reals, backends, out / "realism.png")
    print(table(data))
    return data["exit_status"]
