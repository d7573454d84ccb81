"""``pfmtwin stress SUITE --workers N``: run a suite of scenarios in parallel on Dask.

A suite is a folder of scenario files, or one file with a ``[[variant]]`` matrix
(:func:`scenarios.scenario.load_suite`). Each run is ``pfmtwin run FILE [--variant NAME] --out
OUT/NAME`` in a process of its own, started from a Dask task (a ``LocalCluster`` of ``N``
one-thread worker processes on loopback by default, or the scheduler at ``--scheduler``): a run
that crashes, or hangs past its scenario's ``[run] timeout``, is reported as such, its process
group is killed, and the other runs go on. Every run records its own session. The summary
(``OUT/stress.json``, and a table on stdout) has one row per run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from control.errors import PfmTwinError
from control.served import run_command
from scenarios.scenario import Scenario, load_suite

__all__ = ["StressError", "run_one", "stress", "table"]

#: Columns of the summary table: (key of a row, heading, format).
COLUMNS = (("name", "scenario", "{}"), ("status", "status", "{}"), ("seconds", "wall s", "{:.1f}"),
           ("pulses", "pulses", "{}"), ("refused", "refused", "{}"), ("instrument_time_s", "instrument s", "{:.1f}"),
           ("switched", "switched", "{:.3f}"))


class StressError(PfmTwinError, ValueError):
    """A stress run that cannot start: bad workers, an output folder that holds another run."""


def run_one(file: str, variant: str | None, out: str, timeout: float) -> dict:
    """Run one scenario in a process of its own (a Dask task); never raises for the run's failure.

    Returns:
        ``{"name", "status": "ok" | "failed" | "timeout", "returncode", "seconds", "summary" (the
        run's summary.json, or None), "error" (the last lines it printed on stderr, if it failed)}``.
    """
    args = [file, "--out", out, "--overwrite", "--quiet"] + (["--variant", variant] if variant else [])
    finished = run_command("run", *args, timeout=timeout)
    summary_file = Path(out) / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() and finished.returncode == 0 else None
    status = "timeout" if finished.timed_out else "ok" if finished.returncode == 0 and summary else "failed"
    error = None
    if status != "ok":
        lines = [line for line in finished.stderr.splitlines() if line.strip() and "\r" not in line]
        error = "\n".join(lines[-5:]) or f"exit status {finished.returncode}"
        if finished.timed_out:
            error = f"no result after {timeout:g} s (the scenario's [run] timeout); its processes were killed"
    return {"name": Path(out).name, "status": status, "returncode": finished.returncode,
            "seconds": round(finished.seconds, 2), "summary": summary, "error": error}


def _row(result: dict) -> dict:
    s = result.get("summary") or {}
    refused = s.get("refused")
    return {"name": result["name"], "status": result["status"], "seconds": result["seconds"],
            "pulses": s.get("pulses"), "refused": len(refused) if isinstance(refused, list) else None,
            "instrument_time_s": s.get("instrument_time_s"), "switched": s.get("fraction_of_pixels_switched")}


def table(results: list[dict]) -> str:
    """The summary as a plain-text table (one line per run, then the failures' messages)."""
    rows = [_row(r) for r in results]
    cells = [[heading for _, heading, _ in COLUMNS]]
    for row in rows:
        cells.append([("-" if row[key] is None else fmt.format(row[key])) for key, _, fmt in COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells)
    failures = [f"{r['name']}: {r['status']}: {r['error']}" for r in results if r["status"] != "ok"]
    return text + ("\n\n" + "\n".join(failures) if failures else "")


def stress(suite: str | os.PathLike, out: str | os.PathLike, *, workers: int = 2, scheduler: str | None = None,
           timeout: float | None = None, progress: bool = True) -> dict:
    """Run every scenario of ``suite`` on Dask; write ``out/stress.json``; return it.

    Args:
        suite: a folder of scenario files or a matrix file.
        out: output folder; run ``NAME`` records into ``out/NAME``.
        workers: worker processes of the LocalCluster (ignored with ``scheduler``).
        scheduler: address of an existing Dask scheduler.
        timeout: wall-time budget of each run, s (default: each scenario's ``[run] timeout``).
        progress: show a progress bar.

    Returns:
        ``{"suite", "workers", "scheduler", "wall_time_s", "runs": [...], "ok", "failed", "timeout"}``.

    Raises:
        ScenarioError: a bad suite (nothing is run).
        StressError: ``workers`` below 1 or ``timeout`` not positive.
    """
    from distributed import as_completed

    from learning.trainer import dask_client

    scenarios: list[Scenario] = load_suite(suite)
    if scheduler is None and int(workers) < 1:
        raise StressError(f"workers={workers!r}; a stress run needs at least 1 worker process")
    if timeout is not None and not timeout > 0:
        raise StressError(f"timeout={timeout!r} s must be positive (the wall-time budget of one run)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = []
    with dask_client(scheduler, workers=int(workers)) as client, \
            tqdm(total=len(scenarios), desc="stress", unit="run", file=sys.stderr, disable=not progress) as bar:
        futures = {}
        for scenario in scenarios:
            variant = scenario.variant
            budget = timeout if timeout is not None else scenario.timeout
            future = client.submit(run_one, str(scenario.path.resolve()), variant, str((out / scenario.name).resolve()),
                                   budget, key=f"stress-{scenario.name}", pure=False)
            futures[future] = scenario.name
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            bar.set_postfix_str(f"{result['name']}: {result['status']}")
            bar.update()
    order = [s.name for s in scenarios]
    results.sort(key=lambda r: order.index(r["name"]))
    report = {"suite": str(suite), "workers": None if scheduler else int(workers), "scheduler": scheduler,
              "wall_time_s": round(time.monotonic() - started, 2), "runs": results,
              **{status: sum(r["status"] == status for r in results) for status in ("ok", "failed", "timeout")}}
    (out / "stress.json").write_text(json.dumps(report, indent=2))
    return report
