"""``pfmtwin replay SESSION.h5 --against URL --out DIR``: the sim-to-real gap, command by command.

A recorded session (:mod:`control.recording`) is re-issued, command for command and in order,
against another instrument (``control.connect(URL)``): the twin on another day, another seed,
the emulator, or the twin a real session was recorded against. Whatever differs is the gap
between the two instruments for exactly that experiment. The replay is itself recorded
(``DIR/replay.h5``, the original's metadata plus ``replay_of`` and ``replay_against``), and
``DIR/replay.json`` reports the gap per command and in total; ``DIR/worst_scan.png`` shows the
worst-matching scan pair.

What is re-issued: ``move_tip``, ``scan`` and ``apply_pulse`` (the verbs that act on the
instrument), ``info`` (its hardware, limits and options are compared) and ``now`` (its value is
compared; the Recorder does not record clock reads, so sessions written by it hold none). A
command that failed in the original is re-issued too, and the report says whether the replay
fails the same way (same exception type). A command that fails on the replay only (e.g. a
``LimitError`` because the replay's scanner range is smaller) is reported and the replay goes
on with the next command.

Definitions (every one is 0, or equal, when the replay reproduces the original bit for bit):

correlation
    Pearson correlation of the two piezoresponse images A cos(phase) (``ScanResult.piezoresponse``)
    over the pixels finite in both; exactly 1 for bit-identical images, NaN (null in the JSON)
    when one image is constant.
wall error, nm
    The domain walls of a scan lie half-way between 4-neighbour pixels in different domain
    states (:func:`control.analysis.domains`, one phase axis for both scans: the original's), so
    each such pair gives one wall point, the midpoint of the two pixels' commanded positions
    (``ScanResult.x``, ``.y``; this works for raster and spiral scans and for any wall shape,
    a single wall or a labyrinth). The wall error is the mean, over the wall points of both
    scans, of the distance from each point to the nearest wall point of the other scan (the
    symmetric mean surface distance). It is 0 for identical scans, one pixel pitch for a wall
    moved by one pixel, and NaN (null) when either image has no wall (one domain), since no
    wall position can then be compared.
domain mismatch
    Fraction of pixels whose domain state differs between the two scans (same phase axis).
time difference, s
    Replay minus original instrument time at the start and at the end of each command (the
    clock read just before and just after it, as the Recorder reads it).
pulses equal
    Every field of the two ``PulseRecord`` are equal: x, y, emitted amplitude and width, start
    time, cycles and the requested values.
first divergence
    The first command (index and verb) where the replay differs from the original: its outcome
    differs (one failed and the other did not, or they failed with different exception types),
    its pulse records are not equal, its scans' correlation is below 1 - 1e-9 or any pixel of
    any channel (or a coordinate or line time) differs, or its start or end time differs by
    more than 1e-9 s (a read clock's value likewise). ``info`` answers are compared and their
    differences reported, but do not count: another day or another backend is expected to say
    so. null when the replay reproduces the whole session.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

import control
from control import PulseRecord, ScanResult, ScanSpec
from control.analysis import boundary_points, domains, phase_axis
from control.errors import PfmTwinError, RecordingError
from control.recording import RESERVED_METADATA, Recorder, Session, read_session

#: Files a replay writes into its output folder.
REPORT, SESSION, PICTURE = "replay.json", "replay.h5", "worst_scan.png"
#: Verbs re-issued; any other recorded verb is reported as skipped.
REPLAYED = ("info", "move_tip", "scan", "apply_pulse", "now")
#: A scan pair diverges when its correlation is below 1 - this.
CORRELATION_TOLERANCE = 1e-9
#: A command diverges when its start or end instrument time differs by more than this, s.
TIME_TOLERANCE = 1e-9
#: Sections of ``InstrumentInfo.to_dict()`` compared between the two instruments.
COMPARED_INFO = ("hardware", "limits", "options", "protocol_version")

#: name -> (unit, definition) of the report's numbers: written into the JSON for its reader.
DEFINITIONS = {
    "correlation": ("1", "Pearson correlation of the piezoresponse images A cos(phase) over the pixels finite in "
                         "both; 1 for bit-identical images, null when one image is constant"),
    "wall_error_nm": ("nm", "wall points = midpoints of 4-neighbour pixels in different domain states (one phase "
                            "axis for both scans: the original's); mean over the wall points of both scans of the "
                            "distance to the nearest wall point of the other scan; null when either has no wall"),
    "domain_mismatch": ("1", "fraction of pixels whose domain state differs (one phase axis for both scans)"),
    "start_difference_s": ("s", "replay minus original instrument time just before the command"),
    "end_difference_s": ("s", "replay minus original instrument time just after the command"),
    "pulses_equal": ("1", "all PulseRecord fields equal: x, y, emitted amplitude and width, start, cycles, "
                          "requested amplitude and width"),
    "first_divergence": ("", f"first command whose outcome (ok / exception type) differs, whose pulse records "
                             f"differ, whose scans' correlation < 1 - {CORRELATION_TOLERANCE:g} or differ in any "
                             f"pixel, or whose start or end time differs by more than {TIME_TOLERANCE:g} s; "
                             f"info answers do not count"),
}


class ReplayError(PfmTwinError, ValueError):
    """A replay refused: a missing or foreign session file, or an output folder already used."""


# -- comparing two results --------------------------------------------------------------------


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity: an undefined number is written as null."""
    return float(value) if value is not None and math.isfinite(value) else None


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def scans_identical(original: ScanResult, replay: ScanResult) -> bool:
    """Same spec, channels, coordinates and line times, bit for bit (NaN equals NaN)."""
    if original.spec != replay.spec or set(original.channels) != set(replay.channels):
        return False
    arrays = [(original.channels[name], replay.channels[name]) for name in original.channels]
    arrays += [(getattr(original, name), getattr(replay, name)) for name in ("x", "y", "line_times")]
    return all(_same_bytes(a, b) for a, b in arrays)


def correlation(original: ScanResult, replay: ScanResult) -> float:
    """Pearson correlation of the two piezoresponse images A cos(phase), over pixels finite in both.

    Returns:
        Exactly 1.0 for bit-identical images (the floating-point formula may miss it by an
        ulp), NaN when the images differ in shape or one of them is constant over those pixels.
    """
    a, b = np.asarray(original.piezoresponse, np.float64), np.asarray(replay.piezoresponse, np.float64)
    if a.shape != b.shape:
        return float("nan")
    if _same_bytes(a, b):
        return 1.0
    both = np.isfinite(a) & np.isfinite(b)
    a, b = a[both], b[both]
    if a.size < 2 or a.min() == a.max() or b.min() == b.max():
        return float("nan")  # tested before centring: the rounding of a constant's mean is not 0 variance
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / norm) if norm > 0 else float("nan")


def wall_error(original: ScanResult, replay: ScanResult, axis: float | None = None) -> float:
    """Symmetric mean distance between the two scans' domain walls, m (see the module docstring).

    Args:
        original: a scan.
        replay: a scan of the same area.
        axis: phase of the +1 state for both scans, deg (default: the original's phase axis).
            The wall points do not depend on which state is called +1, but the states must be
            read the same way in both scans.

    Returns:
        The mean, over the wall points of both scans, of the distance to the nearest wall point
        of the other scan, m: 0 for identical scans, NaN when either scan shows no wall.
    """
    axis = phase_axis(original.phase) if axis is None else axis
    a = boundary_points(original, domains(original, axis=axis))
    b = boundary_points(replay, domains(replay, axis=axis))
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    from scipy.spatial import cKDTree  # 0.2 s to import: only when a replay compares walls

    to_b, _ = cKDTree(b).query(a)
    to_a, _ = cKDTree(a).query(b)
    return float((to_b.sum() + to_a.sum()) / (len(a) + len(b)))


def compare_scans(original: ScanResult, replay: ScanResult) -> dict:
    """The gap between two scans of the same spec.

    Returns:
        ``identical`` (bool, every pixel, coordinate and line time bit for bit), ``correlation``
        (1), ``wall_error_nm`` (nm), ``domain_mismatch`` (fraction), ``piezoresponse_rms_difference_m``
        (RMS of replay - original A cos(phase), m) and ``line_times_difference_max_s`` (max
        |difference| of the line start times, s); NaN where undefined.
    """
    if original.spec.shape != replay.spec.shape:
        nan = float("nan")
        return {"identical": False, "correlation": nan, "wall_error_nm": nan, "domain_mismatch": nan,
                "piezoresponse_rms_difference_m": nan, "line_times_difference_max_s": nan}
    axis = phase_axis(original.phase)  # one axis, so the two scans' states are read the same way
    mismatch = float(np.mean(domains(original, axis=axis) != domains(replay, axis=axis)))
    difference = np.asarray(replay.piezoresponse, np.float64) - np.asarray(original.piezoresponse, np.float64)
    finite = difference[np.isfinite(difference)]
    times = np.asarray(replay.line_times, np.float64) - np.asarray(original.line_times, np.float64)
    return {
        "identical": scans_identical(original, replay),
        "correlation": correlation(original, replay),
        "wall_error_nm": wall_error(original, replay, axis) * 1e9,
        "domain_mismatch": mismatch,
        "piezoresponse_rms_difference_m": float(np.sqrt(np.mean(finite**2))) if finite.size else float("nan"),
        "line_times_difference_max_s": float(np.max(np.abs(times))) if times.size else 0.0,
    }


def compare_pulses(original: PulseRecord, replay: PulseRecord) -> dict:
    """The gap between two emitted pulses.

    Returns:
        ``equal`` (every field equal), ``differing`` (names of the fields that differ) and
        ``differences``: replay - original for every field (m, V, s, cycles as the field's unit).
    """
    names = [f.name for f in fields(PulseRecord)]
    differing = [name for name in names if getattr(original, name) != getattr(replay, name)]
    return {
        "equal": not differing,
        "differing": differing,
        "differences": {name: getattr(replay, name) - getattr(original, name) for name in names},
    }


def _plain(value: object) -> object:
    """Plain JSON data: tuples as lists, numpy scalars as Python ones."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else repr(v)))


def _flat(value: object, prefix: str) -> dict:
    """A nested dict as {"a.b": leaf}."""
    if isinstance(value, Mapping):
        out = {}
        for key, sub in value.items():
            out.update(_flat(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def info_differences(original: Mapping, replay: Mapping) -> list[dict]:
    """The compared sections (:data:`COMPARED_INFO`) of two ``InstrumentInfo.to_dict()`` that differ.

    Returns:
        One ``{"key": "options.day", "original": 0, "replay": 1}`` per differing leaf (None where
        one side lacks the key), sorted by key.
    """
    a = _flat(_plain({k: original.get(k) for k in COMPARED_INFO if k in original}), "")
    b = _flat(_plain({k: replay.get(k) for k in COMPARED_INFO if k in replay}), "")
    return [{"key": key, "original": a.get(key), "replay": b.get(key)}
            for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


# -- re-issuing one command -------------------------------------------------------------------


def _clock(scope) -> float:
    """Instrument time, s; NaN when the instrument cannot tell (as the Recorder reads it)."""
    try:
        return float(scope.now())
    except PfmTwinError:
        return float("nan")


def _issue(scope, verb: str, args: Mapping) -> object:
    """Re-issue one recorded command with its recorded arguments; return its result."""
    if verb == "move_tip":
        return scope.move_tip(args["x"], args["y"], speed=args.get("speed"))
    if verb == "apply_pulse":
        return scope.apply_pulse(args["x"], args["y"], args["amplitude"], args["width"])
    if verb == "scan":
        spec = args["spec"]
        if isinstance(spec, Mapping):
            try:
                spec = ScanSpec(**spec)
            except (PfmTwinError, TypeError):
                pass  # a spec the original could not take either: pass it on so the refusal is recorded
        return scope.scan(spec)
    if verb == "info":
        return scope.info()
    return scope.now()  # "now"


def _time_difference(original: float, replay: float) -> float:
    """replay - original, s; 0 when both are NaN (neither instrument could tell), NaN when one is."""
    if math.isnan(original) and math.isnan(replay):
        return 0.0
    return replay - original


def _diverges_in_time(difference: float) -> bool:
    return not abs(difference) <= TIME_TOLERANCE  # NaN (one clock unreadable) diverges


def _replay_one(scope, command) -> tuple[dict, ScanResult | None]:
    """Re-issue ``command`` on ``scope`` and compare; return its report entry and the replay's scan."""
    entry = {
        "index": command.index,
        "verb": command.verb,
        "args": _plain(command.args),
        "original": {"ok": command.ok, "error_type": command.error[0] if command.error else None,
                     "error_message": command.error[1] if command.error else None},
    }
    if command.verb not in REPLAYED:
        # the same keys as a replayed entry, so readers of the JSON need not special-case it
        entry.update(skipped=True, replay=None, same_outcome=None, failed_same_way=None, start_difference_s=None,
                     end_difference_s=None, pulse=None, scan=None, info_differences=None, now_difference_s=None,
                     diverges=False, reasons=[])
        return entry, None
    start = _clock(scope)
    result, error = None, None
    try:
        result = _issue(scope, command.verb, command.args)
    except RecordingError:
        raise  # the replay's own session file failed: that is not a gap, stop
    except Exception as exc:  # any refusal or failure of the instrument is part of the gap
        error = exc
    end = _clock(scope)
    entry["skipped"] = False
    entry["replay"] = {"ok": error is None, "error_type": type(error).__name__ if error else None,
                       "error_message": str(error) if error else None}
    reasons = []
    same_outcome = command.ok == (error is None) and (command.ok or command.error[0] == type(error).__name__)
    entry["same_outcome"] = same_outcome
    entry["failed_same_way"] = None if command.ok else same_outcome
    if not same_outcome:
        reasons.append("outcome")
    entry["start_difference_s"] = _time_difference(command.start, start)
    entry["end_difference_s"] = _time_difference(command.end, end)
    if _diverges_in_time(entry["start_difference_s"]) or _diverges_in_time(entry["end_difference_s"]):
        reasons.append("time")
    entry["pulse"] = entry["scan"] = entry["info_differences"] = entry["now_difference_s"] = None
    replay_scan = None
    original_result = command.result
    if command.verb == "apply_pulse" and isinstance(original_result, PulseRecord) and isinstance(result, PulseRecord):
        entry["pulse"] = compare_pulses(original_result, result)
        if not entry["pulse"]["equal"]:
            reasons.append("pulse")
    elif command.verb == "scan" and isinstance(original_result, ScanResult) and isinstance(result, ScanResult):
        entry["scan"] = compare_scans(original_result, result)
        replay_scan = result
        if not entry["scan"]["identical"] or not entry["scan"]["correlation"] >= 1 - CORRELATION_TOLERANCE:
            reasons.append("scan")
    elif command.verb == "info" and isinstance(original_result, Mapping) and result is not None:
        entry["info_differences"] = info_differences(original_result, result.to_dict())
    elif command.verb == "now" and isinstance(original_result, (int, float)) and result is not None:
        entry["now_difference_s"] = float(result) - float(original_result)
        if _diverges_in_time(entry["now_difference_s"]):
            reasons.append("now")
    entry["diverges"], entry["reasons"] = bool(reasons), reasons
    return entry, replay_scan


# -- the report -------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _totals(session: Session, entries: list[dict]) -> dict:
    """The report's totals over every command (units in the key names, as in :data:`DEFINITIONS`)."""
    replayed = [e for e in entries if not e["skipped"]]
    pulses = [e["pulse"] for e in replayed if e["pulse"] is not None]
    scans = [e["scan"] for e in replayed if e["scan"] is not None]
    correlations = [s["correlation"] for s in scans]
    walls = [s["wall_error_nm"] for s in scans]
    times = [abs(e[key]) for e in replayed for key in ("start_difference_s", "end_difference_s")]
    first = next((e for e in replayed if e["diverges"]), None)
    finite_walls = [w for w in walls if math.isfinite(w)]
    return {
        "commands": len(entries),
        "verbs": dict(Counter(e["verb"] for e in entries)),
        "replayed": len(replayed),
        "skipped": len(entries) - len(replayed),
        "incomplete_in_original": list(session.incomplete),
        "original_failures": sum(not e["original"]["ok"] for e in entries),
        "failed_same_way": sum(e["failed_same_way"] is True for e in replayed),
        "replay_failures": sum(not e["replay"]["ok"] for e in replayed),
        "new_failures": [e["index"] for e in replayed if e["original"]["ok"] and not e["replay"]["ok"]],
        "pulses": sum(isinstance(c.result, PulseRecord) for c in session.commands),
        "pulses_compared": len(pulses),
        "pulses_equal": sum(p["equal"] for p in pulses),
        "scans": sum(isinstance(c.result, ScanResult) for c in session.commands),
        "scans_compared": len(scans),
        "scans_identical": sum(s["identical"] for s in scans),
        "correlation_mean": _mean(correlations),
        "correlation_min": _finite_or_none(min((c for c in correlations if math.isfinite(c)), default=math.nan)),
        "correlation_undefined": sum(not math.isfinite(c) for c in correlations),
        "wall_error_mean_nm": _mean(walls),
        "wall_error_max_nm": float(max(finite_walls)) if finite_walls else None,
        "wall_error_undefined": sum(not math.isfinite(w) for w in walls),
        "domain_mismatch_mean": _mean([s["domain_mismatch"] for s in scans]),
        "domain_mismatch_max": _finite_or_none(max((s["domain_mismatch"] for s in scans), default=float("nan"))),
        "time_difference_max_s": (None if any(math.isnan(t) for t in times)
                                  else float(max(times, default=0.0))),
        "first_divergence": None if first is None else {"index": first["index"], "verb": first["verb"],
                                                        "reasons": first["reasons"]},
    }


def _json_ready(value: object) -> object:
    """``value`` with every NaN or infinite float as None (JSON has neither)."""
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, Mapping):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _worst(entries: list[dict]) -> dict | None:
    """The compared scan that matches worst: lowest correlation (NaN lowest), then largest wall
    error (NaN largest), then largest domain mismatch."""
    scans = [e for e in entries if e.get("scan") is not None]
    if not scans:
        return None

    def badness(e: dict) -> tuple:
        s = e["scan"]
        corr = s["correlation"] if math.isfinite(s["correlation"]) else -math.inf
        wall = s["wall_error_nm"] if math.isfinite(s["wall_error_nm"]) else math.inf
        return (corr, -wall, -s["domain_mismatch"])

    return min(scans, key=badness)


def worst_scan_png(original: ScanResult, replay: ScanResult, path: Path, title: str) -> Path:
    """Save the original's and the replay's piezoresponse A cos(phase) and their difference side by side.

    Both images share one colour scale (pm); the difference (replay - original) has a symmetric one.
    """
    from scenarios.plots import plt  # matplotlib with the Agg backend: no screen needed

    a, b = original.piezoresponse * 1e12, replay.piezoresponse * 1e12
    images = ((a, "original"), (b, "replay"), (b - a, "replay - original"))
    both = np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)]])
    # symmetric about 0, so the colour's sign is the polarization's in both images
    top = float(np.percentile(np.abs(both), 99)) if both.size else 0.0
    lo, hi = (-top, top) if top > 0 else (-1.0, 1.0)
    spread = float(np.nanmax(np.abs(b - a))) if np.isfinite(b - a).any() else 0.0
    spread = spread if spread > 0 else 1.0  # identical scans: a blank difference, not a singular scale
    (cx, cy), (w, h) = original.spec.center, original.spec.size
    extent = [(cx - w / 2) * 1e6, (cx + w / 2) * 1e6, (cy - h / 2) * 1e6, (cy + h / 2) * 1e6]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), constrained_layout=True)
    for k, (ax, (data, name)) in enumerate(zip(axes, images)):
        vmin, vmax, cmap = (lo, hi, "RdBu_r") if k < 2 else (-spread, spread, "PuOr_r")
        if original.spec.path == "raster":
            im = ax.imshow(data, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax)
        else:
            im = ax.scatter(original.x.ravel() * 1e6, original.y.ravel() * 1e6, c=data.ravel(), s=2, cmap=cmap,
                            vmin=vmin, vmax=vmax)
            ax.set_aspect("equal")
        ax.set_title(name)
        ax.set_xlabel("x (um)")
        ax.set_ylabel("y (um)")
        fig.colorbar(im, ax=ax, label="A cos(phase) (pm)", shrink=0.8)
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


# -- the replay -------------------------------------------------------------------------------


def _read(session: str | os.PathLike) -> Session:
    """The session at ``session``, or a ReplayError naming the path and the fix."""
    if not isinstance(session, (str, os.PathLike)):
        raise ReplayError(f"session={session!r} is a {type(session).__name__}; pass the path of a session file (.h5)")
    path = Path(session)
    if not path.is_file():
        raise ReplayError(f"no session file at {str(path)!r}; check the path (pfmtwin scan --out and "
                          f"control.recording.Recorder write session files)")
    try:
        return read_session(path)
    except RecordingError as exc:
        raise ReplayError(f"cannot replay {str(path)!r}: {exc}") from exc
    except Exception as exc:  # h5py's errors for a file that is HDF5 but not laid out as a session
        raise ReplayError(f"{str(path)!r} is not a readable pfmtwin session ({type(exc).__name__}: {exc}); "
                          f"pass a file written by control.recording.Recorder") from exc


def _check_out(out: str | os.PathLike, session: Session, overwrite: bool) -> Path:
    """The output folder, or a ReplayError if it is a file or already holds a replay."""
    if not isinstance(out, (str, os.PathLike)):
        raise ReplayError(f"out={out!r} is a {type(out).__name__}; pass a folder path")
    if not isinstance(overwrite, bool):
        raise ReplayError(f"overwrite={overwrite!r} must be True or False")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ReplayError(f"out={str(folder)!r} is a file; pass a folder (it is created if missing)")
    if (folder / SESSION).resolve() == session.path.resolve():
        raise ReplayError(f"out={str(folder)!r} would overwrite the session being replayed, "
                          f"{str(session.path)!r}, with its replay; choose another folder")
    used = [name for name in (REPORT, SESSION, PICTURE) if (folder / name).exists()]
    if used and not overwrite:
        raise ReplayError(f"out={str(folder)!r} already holds a replay ({', '.join(used)}); choose another "
                          f"folder or pass overwrite=True (--overwrite)")
    return folder


def _metadata(session: Session, against: str) -> dict:
    """The original's own metadata (the recorder fills its reserved keys anew), plus what was replayed."""
    meta = {key: value for key, value in session.metadata.items()
            if key not in RESERVED_METADATA and isinstance(key, str) and key
            and isinstance(value, (str, int, float)) and not isinstance(value, bool)}
    meta.update(replay_of=str(session.path.resolve()), replay_against=against)  # absolute: the file travels
    return meta


def replay(session: str | os.PathLike, against: str | None, out: str | os.PathLike, *, progress: bool = True,
           record: bool = True, overwrite: bool = False) -> dict:
    """Re-issue a recorded session against another instrument and report the gap.

    Args:
        session: the session file (.h5) written by :class:`control.recording.Recorder`.
        against: URL of the instrument to replay on (``control.connect``); None: the session's
            own ``backend_url``.
        out: output folder, created if missing: ``replay.json`` (the report), ``replay.h5`` (the
            replay's own session, unless ``record`` is false) and ``worst_scan.png`` (when a scan
            was acquired by both instruments).
        progress: show a progress bar on stderr, one tick per command.
        record: record the replay to ``out/replay.h5``.
        overwrite: replace a replay already in ``out`` (else refuse).

    Returns:
        The report as written to ``replay.json``: ``totals`` (see :func:`_totals`; numbers in
        the units their keys name), ``commands`` (one entry per recorded command),
        ``definitions`` (name -> [unit, definition]) and the setup: both instruments' URLs,
        ``setup_differences`` (hardware, limits and options that differ), the files written.
        Undefined numbers (NaN) are None.

    Raises:
        ReplayError: ``session`` is missing or not a session, ``out`` is a file or already
            holds a replay (without ``overwrite``); nothing is written.
        UrlError, TransportError: ``against`` cannot be opened; nothing is written.
        RecordingError: the replay's own session file cannot be written.
    """
    original = _read(session)
    folder = _check_out(out, original, overwrite)
    if against is None:
        against = original.metadata.get("backend_url")
        if not isinstance(against, str) or not against:
            raise ReplayError(f"{str(original.path)!r} names no backend_url to replay against; pass against=URL "
                              f"(--against), e.g. twin://?seed=1")
    if not isinstance(against, str) or not against:
        raise ReplayError(f"against={against!r} is not a backend URL; pass e.g. 'twin://?seed=1' or "
                          f"'socket://127.0.0.1:7001'")
    microscope = scope = control.connect(against)  # raises before anything is written
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if record:
            scope = Recorder(scope, folder / SESSION, metadata=_metadata(original, against), overwrite=overwrite)
    except BaseException:
        scope.close()
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # refused: leave no trace
        raise
    # From here on the replay runs: drop what a previous replay left, so the folder holds one replay.
    for name in (REPORT, PICTURE) + (() if record else (SESSION,)):
        (folder / name).unlink(missing_ok=True)
    entries, replay_scans = [], {}
    with scope, tqdm(total=len(original.commands), desc="replay", unit="command", file=sys.stderr,
                     disable=not progress) as bar:
        setup = microscope.info().to_dict()  # not through the Recorder: the replay records only the session's commands
        for command in original.commands:
            bar.set_postfix_str(f"{command.index} {command.verb}")
            entry, scan = _replay_one(scope, command)
            entries.append(entry)
            if scan is not None:
                replay_scans[command.index] = scan
            bar.update()
    totals = _totals(original, entries)
    worst = _worst(entries)
    picture, note = None, None
    if worst is None:
        note = ("the session has no scan" if totals["scans"] == 0
                else "no scan of the session was acquired by both instruments")
    else:
        scan = worst["scan"]
        picture = folder / PICTURE
        first = next(c.result for c in original.commands if c.index == worst["index"])
        title = (f"command {worst['index']} (scan): correlation {scan['correlation']:.6g}, "
                 f"wall error {scan['wall_error_nm']:.3g} nm, domain mismatch {scan['domain_mismatch']:.3g}")
        worst_scan_png(first, replay_scans[worst["index"]], picture, title)
    totals.update(
        original_backend_url=original.metadata.get("backend_url"),
        replay_backend_url=setup["url"],
        worst_scan={"index": worst["index"], "png": str(picture)} if worst else None,
        worst_scan_note=note,
    )
    report = _json_ready({
        "session": str(original.path),
        "against": against,
        "replay_session": str(folder / SESSION) if record else None,
        "original_backend": original.metadata.get("backend"),
        "replay_backend": setup["backend"],
        "setup_differences": info_differences(original.metadata, setup),
        "totals": totals,
        "definitions": {name: list(value) for name, value in DEFINITIONS.items()},
        "commands": entries,
    })
    text = json.dumps(report, indent=2, allow_nan=False)
    temporary = folder / (REPORT + ".part")
    temporary.write_text(text + "\n")
    temporary.replace(folder / REPORT)  # a reader never sees half a report
    return report


# -- the command line -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``pfmtwin replay`` to ``parser``."""
    parser.add_argument("session", type=Path, help="session file (.h5) written by pfmtwin scan or a Recorder")
    parser.add_argument("--against", default=None, metavar="URL",
                        help="instrument to replay on, e.g. 'twin://?seed=3&day=1' (default: the session's own "
                             "backend_url)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder for replay.json, replay.h5 and worst_scan.png")
    parser.add_argument("--overwrite", action="store_true", help="replace a replay already in --out")


def command(args: argparse.Namespace) -> int:
    """Run ``pfmtwin replay``: print the report's totals as JSON; return 0."""
    report = replay(args.session, args.against, args.out, overwrite=args.overwrite)
    print(json.dumps(report["totals"], indent=2))
    return 0
