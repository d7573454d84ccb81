"""Pictures of scans and experiments (matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from control import ScanResult  # noqa: E402


def _extent(result: ScanResult) -> list[float]:
    (cx, cy), (w, h) = result.spec.center, result.spec.size
    return [(cx - w / 2) * 1e6, (cx + w / 2) * 1e6, (cy - h / 2) * 1e6, (cy + h / 2) * 1e6]


def _show(ax, result: ScanResult, channel: str, title: str):
    data = result.channels[channel]
    if channel == "amplitude":
        data, cmap, label = data * 1e12, "afmhot", "amplitude (pm)"
    elif channel == "phase":
        data, cmap, label = data, "twilight", "phase (deg)"
    else:
        data, cmap, label = (data - np.median(data)) * 1e9, "copper", "height (nm)"
    if result.spec.path == "raster":
        lo, hi = np.percentile(data, [1, 99])
        im = ax.imshow(data, origin="lower", extent=_extent(result), cmap=cmap, vmin=lo, vmax=hi)
    else:
        im = ax.scatter(result.x.ravel() * 1e6, result.y.ravel() * 1e6, c=data.ravel(), s=2, cmap=cmap)
        ax.set_aspect("equal")
    ax.set_title(title)
    ax.set_xlabel("x (um)")
    ax.set_ylabel("y (um)")
    ax.figure.colorbar(im, ax=ax, label=label, shrink=0.8)


def scan_png(result: ScanResult, path: str | Path, title: str = "") -> Path:
    """Save height, amplitude and phase of one scan side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    for ax, channel in zip(axes, ("height", "amplitude", "phase")):
        _show(ax, result, channel, f"{title} {channel}".strip())
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def before_after_png(before: ScanResult, after: ScanResult, pulses: list, path: str | Path) -> Path:
    """Amplitude and phase before and after a pulse experiment, pulse sites marked (+: V > 0)."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 9.5), constrained_layout=True)
    for row, (result, when) in enumerate(((before, "before"), (after, "after"))):
        for col, channel in enumerate(("amplitude", "phase")):
            ax = axes[row, col]
            _show(ax, result, channel, f"{channel}, {when} {len(pulses)} pulses")
            if when == "after" and pulses:
                xs = np.array([p.x for p in pulses]) * 1e6
                ys = np.array([p.y for p in pulses]) * 1e6
                pos = np.array([p.amplitude > 0 for p in pulses])
                ax.scatter(xs[pos], ys[pos], marker="+", c="cyan", s=60, label="V > 0")
                ax.scatter(xs[~pos], ys[~pos], marker="x", c="lime", s=50, label="V < 0")
                ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
