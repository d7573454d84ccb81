"""``pfmtwin realism``: do a backend's images look like real PFM scans, statistic by statistic?

For every real scan (NSID files, read by :mod:`control.nsid`) and every backend URL, the
backend scans an image of the same size, pixels and line rate (raster) and both images go
through the statistics panel of :mod:`control.analysis`. Exit status 0: no checked statistic
is flagged; 1: some are (usable in CI); 2: bad input.

Two rules decide what is flagged (``--rule``):

``paired`` (default): a statistic is flagged when the backend's values differ from the real
    ones, scan for matching scan, by more than the real scans' own spread explains: a paired
    t-test of the differences (one pair per real scan, so scan size, pixels and line rate
    cancel), at a family-wise false-alarm rate ``alpha`` (default 10 %) over the checked
    statistics (Bonferroni). Needs three or more real scans defining the statistic. Pairs whose
    backend value is undefined (NaN: e.g. no wall dip to measure) are left out and counted; a
    statistic the backend defines on fewer than three of them is flagged.
``range``: a statistic is flagged when any of the backend's values lies outside the range the
    real scans span (min to max, not widened).

Why ``paired`` is the default: a handful of real scans span a narrow range. A new scan drawn
from the same population as n real scans falls inside their range with probability
(n - 1)/(n + 1), 60 % for four, so a perfect twin, or a fifth real scan, fails ``range`` on
most of a 12-statistic panel. The report measures this on the real scans given: each held
against the range of the others (``real_leave_one_out``); for the four PbTiO3 scans in
``tests/data/pfm-real`` only half of their values lie inside. ``range`` is still there
for many real scans, and every value's place in the range is reported whatever the rule.

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
from scipy import stats
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
#: The rules that can flag a statistic (see the module's docstring); the first is the default.
RULES = ("paired", "range")
#: Default family-wise false-alarm rate of the paired rule.
ALPHA = 0.1
#: Fewest real scans defining a statistic for the paired rule to test it (two degrees of freedom).
MIN_PAIRS = 3
#: Scale on which the paired rule compares each statistic (unlisted: as it is). Positive scale
#: quantities vary by factors from scan to scan (an amplitude, a noise, a size, a density), so
#: their logarithms are compared: a noise a third of the real one is as far off at any level.
#: Correlations, slopes, shares and phase separations are compared as they are.
TRANSFORMS = dict.fromkeys(("median_amplitude", "pixel_noise", "line_cv", "phase_scatter", "wall_contrast",
                            "wall_width", "minority_fraction", "domain_radius", "wall_density"), "log")


def transformed(name: str, values: list[float]) -> np.ndarray:
    """``values`` of statistic ``name`` on the paired rule's scale (-inf at its domain's edge, NaN outside)."""
    x = np.asarray(values, dtype=float)
    if TRANSFORMS.get(name) == "log":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(x)
    return x


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


def paired_test(name: str, backend: list[float], real: list[float]) -> dict:
    """Paired t-test of backend minus real values of ``name``, on its :data:`TRANSFORMS` scale.

    One pair per real scan that defines the statistic (a finite value on the scale).

    Returns:
        ``pairs`` (how many), ``mean_difference`` (on the scale), ``t``, two-sided ``p`` (None
        with fewer than :data:`MIN_PAIRS` pairs; 0 when a backend value sits at the scale's edge,
        e.g. no domain at all, or all pairs differ by the same amount) and ``undefined`` (pairs
        whose backend value is NaN: the real scan defines the statistic, the backend's image does not).
    """
    b_scale, r_scale = transformed(name, backend), transformed(name, real)
    pairs = [(b, r) for b, r in zip(b_scale, r_scale) if math.isfinite(r)]
    undefined = sum(math.isnan(b) for b, _ in pairs)
    d = np.array([b - r for b, r in pairs if not math.isnan(b)])
    out = {"pairs": len(pairs), "undefined": undefined, "mean_difference": None, "t": None, "p": None}
    if d.size < MIN_PAIRS:
        return out
    if not np.all(np.isfinite(d)):
        out["p"] = 0.0
        return out
    mean, spread = float(d.mean()), float(d.std(ddof=1))
    t = mean / (spread / math.sqrt(d.size)) if spread > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
    p = float(2 * stats.t.sf(abs(t), d.size - 1)) if math.isfinite(t) else 0.0
    out.update(mean_difference=mean, t=_plain(t), p=p)  # t None: every pair differs by the same amount
    return out


def leave_one_out(real_values: list[dict[str, float]], checked: tuple[str, ...]) -> dict:
    """Each real scan held against the range of the others: what ``range`` says of real data.

    Returns:
        ``scans``: per real scan, the checked statistics outside the others' range;
        ``inside_fraction``: of all defined values (None with fewer than 3 real scans);
        ``expected``: (n - 1)/(n + 1), the fraction a scan from the same population would have.
    """
    n = len(real_values)
    if n < 3:
        return {"scans": [], "inside_fraction": None, "expected": None}
    scans, inside, total = [], 0, 0
    for i, values in enumerate(real_values):
        outside = []
        for name in checked:
            others = _range([v[name] for j, v in enumerate(real_values) if j != i])
            if not (math.isfinite(values[name]) and math.isfinite(others[0])):
                continue
            total += 1
            if _inside(values[name], others):
                inside += 1
            else:
                outside.append(name)
        scans.append(outside)
    return {"scans": scans, "inside_fraction": inside / total if total else None, "expected": (n - 1) / (n + 1)}


def check_rule(rule: str, alpha: float, real_count: int) -> None:
    """Refuse a rule the inputs cannot support, before anything is scanned.

    Raises:
        control.InvalidArgumentError: unknown rule, alpha outside (0, 1), or the paired rule
            with fewer than :data:`MIN_PAIRS` real scans.
    """
    if rule not in RULES:
        raise control.InvalidArgumentError(f"--rule {rule!r} is not a rule; use one of {', '.join(RULES)}")
    if not 0.0 < alpha < 1.0:
        raise control.InvalidArgumentError(f"--alpha {alpha} must lie in (0, 1); use e.g. 0.1")
    if rule == "paired" and real_count < MIN_PAIRS:
        raise control.InvalidArgumentError(
            f"the paired rule needs at least {MIN_PAIRS} real scans, got {real_count}; "
            "give more real scans or use --rule range")


def report(reals: list[tuple[Path, control.ScanResult]], real_values: list[dict[str, float]],
           backends: list[Backend], checked: tuple[str, ...], rule: str = RULES[0], alpha: float = ALPHA) -> dict:
    """Everything as plain data: values per scan, ranges, tests, and what is flagged under ``rule``."""
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
        "rule": rule,
        "alpha": alpha,
        "real": [{"file": str(path), "spec": scan.spec.to_dict(), "values": {k: _plain(v) for k, v in values.items()}}
                 for (path, scan), values in zip(reals, real_values)],
        "real_range": {name: [_plain(lo), _plain(hi)] for name, (lo, hi) in real_range.items()},
        "real_leave_one_out": leave_one_out(real_values, checked),
        "backends": [],
        "flagged": {},
    }
    for backend in backends:
        bounds = {name: _range([v[name] for v in backend.values]) for name in STATISTICS}
        outside_range = [name for name in checked if not all(_inside(v[name], real_range[name]) for v in backend.values)]
        tests = {name: paired_test(name, [v[name] for v in backend.values], [v[name] for v in real_values])
                 for name in checked}
        # Testable: enough real scans define it. Flagged: the backend's defined pairs differ, or
        # too few of them are defined (its images lack what the real ones show, e.g. walls).
        testable = [name for name in checked if tests[name]["pairs"] >= MIN_PAIRS]
        level = alpha / max(len(testable), 1)
        if rule == "range":
            flagged = outside_range
        else:
            flagged = [name for name in testable if tests[name]["p"] is None or tests[name]["p"] < level]
        values_inside = [_inside(v[name], real_range[name]) for v in backend.values for name in checked]
        out["backends"].append({
            "url": backend.url,
            "center": list(backend.center),
            "scans": [{"like": str(path), "spec": scan.spec.to_dict(), "values": {k: _plain(x) for k, x in v.items()},
                       "outside_range": [name for name in checked if not _inside(v[name], real_range[name])]}
                      for (path, _), scan, v in zip(reals, backend.scans, backend.values)],
            "range": {name: [_plain(lo), _plain(hi)] for name, (lo, hi) in bounds.items()},
            "outside_range": outside_range,
            "inside_fraction": float(np.mean(values_inside)) if values_inside else None,
            "paired": {"level": level, "tests": tests},
            "flagged": flagged,
        })
        out["flagged"][backend.url] = flagged
    out["exit_status"] = 1 if any(out["flagged"].values()) else 0
    return out


def _span(bounds: list[float | None]) -> str:
    lo, hi = (math.nan if b is None else b for b in bounds)
    return "nan" if not math.isfinite(lo) else f"{lo:.4g}" if lo == hi else f"{lo:.4g} - {hi:.4g}"


def _cell(backend: dict, name: str) -> str:
    """A backend's range of one statistic, how many values lie outside the real range, the verdict."""
    scans = backend["scans"]
    text = _span(backend["range"][name])
    undefined = sum(scan["values"][name] is None for scan in scans)
    if undefined and text != "nan":
        text += f" ({undefined} undefined)"
    outside = sum(name in scan["outside_range"] for scan in scans)
    if outside and name in backend["paired"]["tests"]:
        text += f" [{outside}/{len(scans)} out of range]"
    test = backend["paired"]["tests"].get(name)
    if test and test["p"] is not None:
        text += f" t={test['t']:+.1f}" if test["t"] is not None else " t=inf"
    if name in backend["flagged"]:
        text += " FLAGGED"
    return text


def table(data: dict) -> str:
    """The comparison as a text table: statistic | unit | real range | each backend, and the verdict."""
    head = ["statistic", "unit", "real range", *(b["url"] for b in data["backends"])]
    rows = []
    for name, meta in data["statistics"].items():
        row = [name if meta["checked"] else f"({name})", meta["unit"], _span(data["real_range"][name])]
        row += [_cell(b, name) for b in data["backends"]]
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    lines.append("(name): not checked. [k/n out of range]: values outside the real min-max range. "
                 "t: paired t statistic of backend minus real, scan by scan.")
    if data["rule"] == "paired":
        levels = {f"{b['paired']['level']:.2g}" for b in data["backends"]}
        lines.append(f"rule paired: FLAGGED when p < {' / '.join(sorted(levels))} (family-wise alpha "
                     f"{data['alpha']:g} over the checked statistics).")
    else:
        lines.append("rule range: FLAGGED when any value lies outside the real min-max range.")
    loo = data["real_leave_one_out"]
    if loo["inside_fraction"] is not None:
        lines.append(f"The real scans, each held against the range of the others: {loo['inside_fraction']:.0%} of "
                     f"their values inside (a scan from the same population: {loo['expected']:.0%}).")
    lines.append("; ".join(f"{b['url']}: {len(b['flagged'])} of {len(data['checked'])} checked statistics flagged, "
                           f"{b['inside_fraction']:.0%} of values inside the real range" for b in data["backends"]))
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
        statistics: str | None = None, rule: str = RULES[0], alpha: float = ALPHA) -> int:
    """Compare, print the table, write ``out/realism.json`` and ``out/realism.png``.

    Returns:
        0 when no checked statistic of any backend is flagged under ``rule``, else 1.

    Raises:
        control.PfmTwinError: a missing or unreadable file, a bad URL, an unknown statistic or
            rule, too few real scans for the rule.
    """
    checked = parse_statistics(statistics)
    reals = [item for path in reals_in for item in read_scans(path)]
    check_rule(rule, alpha, len(reals))
    real_values = [image_statistics(scan) for _, scan in reals]
    backends = scan_backends(reals, urls, center)
    data = report(reals, real_values, backends, checked, rule, alpha)
    out.mkdir(parents=True, exist_ok=True)
    (out / "realism.json").write_text(json.dumps(data, indent=2) + "\n")
    picture(reals, backends, out / "realism.png")
    print(table(data))
    return data["exit_status"]
