"""The ``pfmtwin`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

import control
from scenarios.catalog import add_arguments as catalog_arguments
from scenarios.replay import add_arguments as replay_arguments


def _info(args) -> int:
    with control.connect(args.url) as scope:
        print(json.dumps(scope.info().to_dict(), indent=2))
    return 0


def _scan(args) -> int:
    from tqdm import tqdm

    from control.errors import RecordingError
    from control.recording import Recorder
    from scenarios.plots import scan_png

    spec = control.ScanSpec(
        center=tuple(args.center), size=tuple(args.size), pixels=tuple(args.pixels),
        line_rate=args.line_rate, path=args.path, retrace=args.retrace,
    )
    metadata = {k: v for k, v in (("sample", args.sample), ("investigator", args.investigator)) if v}
    if args.out.exists() and not args.overwrite:
        raise RecordingError(f"session file {str(args.out)!r} already exists; choose another --out or pass --overwrite")
    scope = control.connect(args.url)
    try:
        scope.limits.check_scan(spec)  # a refused scan creates no file
        recorder = Recorder(scope, args.out, metadata=metadata, overwrite=args.overwrite)
    except BaseException:
        scope.close()
        raise
    lines = spec.shape[0]  # a 256-line image at 1 Hz takes 256 s on a real-time instrument: show it
    with recorder, tqdm(total=lines, desc="scan", unit="line", file=sys.stderr,
                        postfix=f"{lines / spec.line_rate:g} s of instrument time") as bar:
        result = recorder.scan(spec, on_line=lambda *_: bar.update())
    if args.png:
        scan_png(result, args.png, title=args.url)
    print(json.dumps({"out": str(args.out), "png": str(args.png) if args.png else None,
                      "shape": list(result.amplitude.shape), "end_time_s": float(result.line_times[-1])}))
    return 0


def _demo(args) -> int:
    from scenarios.demo import DemoConfig, run

    config = DemoConfig(url=args.url, out=Path(args.out), pulses=args.pulses,
                        rescan_every=args.rescan_every, seed=args.seed)
    print(json.dumps(run(config), indent=2))
    return 0


def _realism(args) -> int:
    from scenarios.realism import run

    return run(args.real, args.backend, Path(args.out), center=args.center, statistics=args.statistics,
               rule=args.rule, alpha=args.alpha)


def _beps(args) -> int:
    from control.spectroscopy import Band
    from scenarios.beps import run

    summary = run(args.url, Path(args.out), real=args.real, pixels=tuple(args.pixels), size=tuple(args.size),
                  center=tuple(args.center) if args.center else None, step=args.step,
                  band=Band(center=args.band_center, width=args.band_width, bins=args.bins, duration=args.duration))
    print(json.dumps({k: summary[k] for k in ("twin", "comparison") if k in summary}, indent=2))
    return 0


def _coupled(args) -> int:
    from scenarios.coupled import run

    summary = run(args.sample, args.theory, Path(args.out), episodes=args.episodes, steps=args.steps,
                  candidates=args.candidates, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


def _probe(args) -> int:
    from scenarios.probe import main as probe

    return probe(args.seed, args.scale)


def _run(args) -> int:
    from scenarios.run import run_scenario
    from scenarios.scenario import find_scenario

    scenario = find_scenario(args.scenario, args.variant)
    summary = run_scenario(scenario, args.out, overwrite=args.overwrite, progress=not args.quiet)
    print(json.dumps(summary, indent=None if args.quiet else 2))
    return 0


def _replay(args) -> int:
    from scenarios.replay import command

    return command(args)


def _validate(args) -> int:
    from scenarios.validate import validate

    summary = validate(args.policy, args.suite, args.out, episodes=args.episodes, seed=args.seed,
                       particle=args.particle, max_steps=args.max_steps)
    print(json.dumps({"report": str(args.out), "json": str(Path(args.out).with_suffix(".json")),
                      "verdict": summary.get("verdict")}))
    return 0


def _stress(args) -> int:
    from scenarios.stress import stress, table

    report = stress(args.suite, args.out, workers=args.workers, scheduler=args.scheduler, timeout=args.timeout)
    print(table(report["runs"]))
    print(json.dumps({k: report[k] for k in ("suite", "workers", "wall_time_s", "ok", "failed", "timeout")}))
    return 0 if report["ok"] == len(report["runs"]) else 1


def _bench(args) -> int:
    from scenarios.bench import bench_be, bench_emulator, bench_twin

    builtin = {"twin": bench_twin, "emulator": bench_emulator, "be": bench_be}
    if args.what in builtin:
        bench = builtin[args.what]
    else:  # benchmarks of other packages (firmware, ...) plug in, so scenarios never imports them
        bench = next(ep for ep in entry_points(group="pfmtwin.benches") if ep.name == args.what).load()
    # each benchmark has its own default instrument and repeat count; pass only what was given
    given = {k: v for k, v in (("url", args.url), ("repeat", args.repeat)) if v is not None}
    if args.model_workers:
        if args.what != "agents":
            raise control.InvalidArgumentError(f"--model-workers applies to `pfmtwin bench agents`, not {args.what!r}")
        try:
            given["model_workers"] = [int(p) for p in args.model_workers.split(",")]
        except ValueError:
            raise control.InvalidArgumentError(
                f"--model-workers {args.model_workers!r} must be worker counts separated by commas, e.g. 8,32,128"
            ) from None
        if min(given["model_workers"]) < 1:
            raise control.InvalidArgumentError(f"--model-workers {args.model_workers!r}: every count must be >= 1")
    if args.scaling:
        if args.what != "twin":
            raise control.InvalidArgumentError(f"--scaling applies to `pfmtwin bench twin`, not {args.what!r}")
        given["scaling"] = True
    print(json.dumps(bench(**given)))
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``pfmtwin``."""
    p = argparse.ArgumentParser(prog="pfmtwin", description="Digital twin of a PFM writing domain walls in PbTiO3.")
    p.add_argument("--version", action="version", version=f"pfmtwin {control.__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="print the identity, hardware spec and limits of an instrument")
    s.add_argument("url", help="backend URL, e.g. twin://?seed=7")
    s.set_defaults(func=_info)

    s = sub.add_parser("scan", help="acquire one image and record the session to HDF5")
    s.add_argument("url", help="backend URL, e.g. twin://?seed=7 or socket://127.0.0.1:7001")
    s.add_argument("--out", type=Path, required=True, help="session file (.h5); must not exist unless --overwrite")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    s.add_argument("--png", type=Path, help="also save a picture of the channels")
    s.add_argument("--center", type=float, nargs=2, default=(1e-6, 1e-6), metavar=("X", "Y"),
                   help="image centre, m (default: 1e-06 1e-06)")
    s.add_argument("--size", type=float, nargs=2, default=(1e-6, 1e-6), metavar=("W", "H"),
                   help="image width and height, m (default: 1e-06 1e-06)")
    s.add_argument("--pixels", type=int, nargs=2, default=(256, 256), metavar=("POINTS", "LINES"),
                   help="points per line and lines (default: 256 256)")
    s.add_argument("--line-rate", type=float, default=1.0, help="lines per second, Hz (default: 1.0)")
    s.add_argument("--path", choices=("raster", "spiral"), default="raster", help="tip path (default: raster)")
    s.add_argument("--retrace", action="store_true", help="also record the retrace of every line")
    s.add_argument("--sample", default="", help="sample name stored in the session file")
    s.add_argument("--investigator", default="", help="investigator stored in the session file")
    s.set_defaults(func=_scan)

    s = sub.add_parser("demo", help="the wall-pulse experiment on the twin, with a before/after picture")
    s.add_argument("--url", default="twin://?seed=3&init=wall&field=2e-6&scanner=closed")
    s.add_argument("--out", default="out/demo", help="output folder")
    s.add_argument("--pulses", type=int, default=20)
    s.add_argument("--rescan-every", type=int, default=5)
    s.add_argument("--seed", type=int, default=1, help="seed of the pulse sites, voltages and widths")
    s.set_defaults(func=_demo)

    s = sub.add_parser("beps", help="a BEPS grid through the contract: SHO fits, loops, NSID file; against real loops",
                       description="Switching spectroscopy on a grid of points of any backend that does it "
                                   "(twin://). Writes beps.h5 (NSID), beps.json and beps.png to --out; with --real, "
                                   "uses that file's bias waveform and compares the loops with its loops.")
    s.add_argument("url", help="backend URL, e.g. 'twin://?seed=1&grid=256&field=2e-6'")
    s.add_argument("--out", default="out/beps", metavar="DIR", help="output folder")
    s.add_argument("--real", default=None, metavar="FILE", help="measured BEPS loops (NSID), e.g. "
                   "tests/data/pfm-beps/BEPS_PTO_50x50.h5")
    s.add_argument("--pixels", type=int, nargs=2, default=[8, 8], metavar=("NX", "NY"), help="grid points")
    s.add_argument("--size", type=float, nargs=2, default=[0.8e-6, 0.8e-6], metavar=("W", "H"), help="grid size, m")
    s.add_argument("--center", type=float, nargs=2, default=None, metavar=("X", "Y"),
                   help="grid center, m (default: the scanner range's)")
    s.add_argument("--step", type=float, default=1e-3, help="length of each DC step, s")
    s.add_argument("--band-center", type=float, default=357e3, help="band center, Hz")
    s.add_argument("--band-width", type=float, default=60e3, help="band width, Hz")
    s.add_argument("--bins", type=int, default=32, help="frequency bins per read-out")
    s.add_argument("--duration", type=float, default=2e-3, help="read-out length, s")
    s.set_defaults(func=_beps)

    s = sub.add_parser("coupled", help="theory-guided against unguided pulses on an INTERSECT bus: the theory "
                       "service predicts, the microscope service answers",
                       description="Starts a Mosquitto broker, a theory service (the twin's physics from the observed "
                                   "image) and a microscope service per episode, and runs DomainWall-v0 episodes "
                                   "choosing pulses by theory's predicted curvature gain, and the same episodes with "
                                   "random pulses. Writes coupled.json and coupled.png to --out.")
    s.add_argument("--sample", default="twin://?seed=11&day=2&grid=64&field=5e-7&init=wall&scanner=closed",
                   help="the sample's twin URL (its seed= is the first episode's film)")
    s.add_argument("--theory", default="twin://?seed=3&grid=64&noise=0&scanner=closed",
                   help="the theory's twin options (its own disorder seed; no init= or field=)")
    s.add_argument("--episodes", type=int, default=4, help="episodes per arm")
    s.add_argument("--steps", type=int, default=8, help="pulses per episode")
    s.add_argument("--candidates", type=int, default=6, help="pulses proposed per step")
    s.add_argument("--seed", type=int, default=0, help="seed of the proposals")
    s.add_argument("--out", default="out/coupled", metavar="DIR", help="output folder")
    s.set_defaults(func=_coupled)

    s = sub.add_parser("realism", help="compare a backend's image statistics with real NSID scans; exit 1 if flagged",
                       description="Scan, on each backend, an image like each real scan (size, pixels, line rate) "
                                   "and compare the statistics panels of control.analysis. Exit 0: no checked "
                                   "statistic flagged; 1: some flagged; 2: bad input. Rules: 'paired' flags a "
                                   "statistic whose backend-minus-real differences, scan by scan, fail a paired "
                                   "t-test at family-wise ALPHA; 'range' flags any value outside the real min-max "
                                   "range (a fifth real scan fails it on most statistics; see scenarios.realism).")
    s.add_argument("real", nargs="+", help="NSID files (.h5) or folders of them")
    s.add_argument("--backend", action="append", required=True, metavar="URL", help="backend URL; repeatable")
    s.add_argument("--out", default="out/realism", metavar="DIR", help="output folder for realism.json and realism.png")
    s.add_argument("--center", type=float, nargs=2, default=None, metavar=("X", "Y"),
                   help="image centre on the backend, m (default: the middle of its scanner's range)")
    s.add_argument("--statistics", default=None, metavar="NAME,NAME",
                   help="statistics to check (default: all but phase_up and phase_down, see scenarios.realism)")
    s.add_argument("--rule", default="paired", help="paired (default; needs 3 or more real scans) or range")
    s.add_argument("--alpha", type=float, default=0.1,
                   help="family-wise false-alarm rate of the paired rule over the checked statistics (default 0.1)")
    s.set_defaults(func=_realism)

    s = sub.add_parser("probe", help="hostile testing of a served twin: fault mixes, fuzzing, storms, kill -9; "
                                     "exit 1 if anything is wrong, doubled, lost or hangs",
                       description="Runs pfmtwin emulate (and recording processes) under seeded link faults, "
                                   "fuzzed frames, connect storms and SIGKILL, and prints one JSON object of counts "
                                   "(see scenarios.probe). --scale 1 runs issue 11's counts (about 10 minutes).")
    s.add_argument("--seed", type=int, default=0, help="seed of the scripts, faults and blobs (default: 0)")
    s.add_argument("--scale", type=float, default=1.0,
                   help="multiply every count by this, in (0, 10] (default: 1.0; 0.01 takes about a minute)")
    s.set_defaults(func=_probe)

    s = sub.add_parser("run", help="run a scenario file (TOML) and record it to one session file",
                       description="Run one scenario (see scenarios.scenario for the file format): its backend, "
                                   "limits, metadata and plan. Writes DIR/session.h5, DIR/before_after.png and "
                                   "DIR/summary.json.")
    s.add_argument("scenario", help="scenario file (.toml), e.g. scenarios/examples/wall-pulse.toml")
    s.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    s.add_argument("--overwrite", action="store_true", help="replace a session already in DIR")
    s.add_argument("--variant", default=None, help="the variant to run, of a file with a [[variant]] matrix")
    s.add_argument("--quiet", action="store_true", help="no progress bar; the summary on one line")
    s.set_defaults(func=_run)

    s = sub.add_parser("stress", help="run a suite of scenarios in parallel on Dask; one summary table",
                       description="Run every scenario of SUITE (a folder of scenario files, or a file with a "
                                   "[[variant]] matrix) as its own process from Dask tasks; a run that crashes or "
                                   "hangs past its timeout is reported and the others go on. Exit 1 if any run did "
                                   "not end well.")
    s.add_argument("suite", help="folder of scenario files, or a matrix file")
    s.add_argument("--out", type=Path, default=Path("out/stress"), metavar="DIR",
                   help="output folder (one sub-folder per run, and stress.json)")
    s.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    s.add_argument("--scheduler", default=None, metavar="ADDRESS", help="an existing Dask scheduler instead")
    s.add_argument("--timeout", type=float, default=None,
                   help="wall-time budget of each run, s (default: each scenario's [run] timeout)")
    s.set_defaults(func=_stress)

    s = sub.add_parser("validate", help="run a policy and baselines on a suite; write an HTML validation report",
                       description="Run the policy, uniform random pulses and the talk's heuristic (a random point "
                                   "on the wall, random bias and width) for K episodes on every scenario of SUITE, "
                                   "and write one self-contained HTML report (interquartile mean and stratified "
                                   "bootstrap 95 percent CIs of the return, probability of improvement, wall images, "
                                   "safety events, timing) with a JSON summary beside it.")
    s.add_argument("--policy", required=True, help="DomainWall-v0 policy file from `pfmtwin agent train`")
    s.add_argument("--suite", required=True, help="folder of scenario files, or a matrix file")
    s.add_argument("--episodes", type=int, default=8, help="episodes per scenario and agent (default 8)")
    s.add_argument("--out", type=Path, default=Path("out/validation/report.html"), help="the HTML report")
    s.add_argument("--seed", type=int, default=0, help="episode k resets with seed + k (default 0)")
    s.add_argument("--particle", type=int, default=None, help="particle of the policy file (default: its best)")
    s.add_argument("--max-steps", type=int, default=None, help="pulses per episode (default: the policy's own)")
    s.set_defaults(func=_validate)

    s = sub.add_parser("replay", help="re-issue a recorded session against another backend; report the gap",
                       description="Re-issue a session's commands, in order, against URL (default: the backend it "
                                   "was recorded on) and report per command and in total: pulse records equal, "
                                   "image correlation, wall-position error (nm), instrument-time differences and "
                                   "where the two first diverge. Writes DIR/replay.json, DIR/replay.h5 and "
                                   "DIR/worst_scan.png.")
    replay_arguments(s)
    s.set_defaults(func=_replay)

    s = sub.add_parser("catalog", help="list, search or serve (Tiled) a folder of session files",
                       description="With --where KEY=VALUE (repeatable) or --list: print the matching sessions "
                                   "as JSON lines. Otherwise serve the folder through Tiled on loopback until "
                                   "interrupted; the Tiled client and web UI browse and search it.")
    catalog_arguments(s)

    # Commands of other packages (the emulator, ...) plug in here, so scenarios never import them.
    for ep in sorted(entry_points(group="pfmtwin.commands"), key=lambda e: e.name):
        ep.load()(sub)

    s = sub.add_parser("bench", help="benchmarks; print one JSON object")
    s.add_argument("what", choices=("twin", "emulator", "be", *sorted(ep.name for ep in entry_points(group="pfmtwin.benches"))))
    s.add_argument("--url", default=None, help="backend URL (default: the benchmark's own, e.g. twin://?seed=7)")
    s.add_argument("--repeat", type=int, default=None, help="repetitions (default: the benchmark's own)")
    s.add_argument("--model-workers", default=None, metavar="P,P,...",
                   help="agents only: predict sync and async s/it on these worker counts with the scheduling model")
    s.add_argument("--scaling", action="store_true",
                   help="twin only: also open, scan and pulse times for film grids 256, 512, 1024 and 2048")
    s.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pfmtwin`` console script."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except control.PfmTwinError as exc:
        print(f"pfmtwin: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
