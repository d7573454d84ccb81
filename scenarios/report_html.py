"""The HTML page of the agent validation report: one self-contained file (every style and image
inline, no network, no JavaScript) from the results and the summary of :mod:`scenarios.report`."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

__all__ = ["fmt_p", "render_html"]

#: One colour per agent, in order (matplotlib's tab10, which stays apart for colour-blind readers).
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def fmt_p(p: float, ci: list[float]) -> str:
    """A probability of improvement and its interval, as the report prints it."""
    return f"{p:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;
max-width:1400px;padding:0 16px;color:#1b1b1b;background:#fff;line-height:1.4}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:32px}
.meta{color:#555;margin-top:0}.meta code,code{background:#f3f3f3;padding:0 3px;border-radius:3px}
.verdict{border-left:6px solid #1f77b4;background:#f2f7fc;padding:8px 16px;margin:16px 0}
.verdict p{margin:6px 0;font-size:1.05em}
table{border-collapse:collapse;font-size:0.9em;margin:8px 0}
th,td{border:1px solid #d0d0d0;padding:4px 7px;text-align:right;vertical-align:top}
th{background:#eef0f3;text-align:center}td.name,td.agent{text-align:left}
tr.candidate td{font-weight:600}tr.overall td{background:#f7f7f7}tr.first td{border-top:2px solid #888}
.ci{white-space:nowrap}.better{color:#0a6b2d}.too{color:#666}.worse{color:#b00020}.unclear,.na{color:#666}
.notes{color:#444;font-size:0.9em;max-width:1000px}
.plots img{max-width:100%;height:auto;border:1px solid #eee}
.images{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px}
.agentimg{border:1px solid #ddd;padding:6px;border-radius:4px}.agentimg h4{margin:2px 0 6px}
.pair{display:flex;gap:6px}.pair figure{margin:0;flex:1;text-align:center;font-size:0.85em;color:#444}
.pair img{width:100%;height:auto;image-rendering:pixelated}
.missing{border:1px dashed #bbb;color:#888;padding:30px 4px;font-size:0.85em}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font-size:0.85em}
footer{margin-top:32px;color:#777;font-size:0.85em}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None) -> str:
    return "&ndash;" if value is None else _e(f"{value:.4g}")


def _seconds(value: float | None) -> str:
    return "&ndash;" if value is None else _e(f"{value:.3g}")


def _iqm_cell(point: float | None, ci: list[float] | None) -> str:
    if point is None:
        return '<span class="na">no episode</span>'
    return f"{_num(point)}<br><span class=\"unclear ci\">[{_num(ci[0])}, {_num(ci[1])}]</span>"


def _p_cell(improvement: dict) -> str:
    if improvement["p"] is None:
        return '<td class="na">not comparable</td>'
    call = improvement["call"]
    word = {"better": "better", "worse": "worse", "unclear": "no clear difference",
            "too few episodes": "too few episodes to call"}[call]
    return f'<td class="{call.split()[0]} ci">{_e(fmt_p(improvement["p"], improvement["ci"]))}<br>{word}</td>'


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _row(summary: dict, agent: str, cell: dict, improvement: dict | None, episodes: str, first: str,
         classes: list[str]) -> str:
    candidate = agent == summary["candidate"]
    cls = " ".join(classes + (["candidate"] if candidate else []))
    cols = [first, f'<td class="agent"><span style="color:{_colour(summary, agent)}">&#9632;</span> {_e(agent)}</td>',
            f"<td>{_iqm_cell(cell['iqm'], cell['iqm_ci'])}</td>", f"<td>{_num(cell['mean'])}</td>",
            f"<td>{episodes}</td>"]
    cols += [f"<td>{cell[key]}</td>" for key in ("wall_losses", "refused", "limit_hits", "crashes")]
    cols += [f"<td>{_seconds(cell['wall_s_per_step'])}</td>", f"<td>{_seconds(cell['instrument_s_per_step'])}</td>"]
    for baseline in summary["baselines"]:
        cols.append(_p_cell(improvement[baseline]) if candidate and improvement else '<td class="na">&ndash;</td>')
    return f'<tr class="{cls}">' + "".join(cols) + "</tr>"


def _colour(summary: dict, agent: str) -> str:
    agents = [summary["candidate"], *summary["baselines"]]
    return _COLOURS[agents.index(agent) % len(_COLOURS)]


def _table(summary: dict) -> str:
    candidate, baselines = summary["candidate"], summary["baselines"]
    agents, k = [candidate, *baselines], summary["episodes"]
    head = ["scenario", "agent", "IQM of returns [95 % CI]", "mean return", "episodes with a return",
            "wall losses", "refused", "limit hits", "crashes", "wall time per step (s)",
            "instrument time per step (s)"]
    head += [f"P({_e(candidate)} &gt; {_e(b)}) [95 % CI]" for b in baselines]
    rows = []
    for scenario in summary["scenarios"]:
        for i, agent in enumerate(agents):
            first = (f'<td class="name" rowspan="{len(agents)}"><b>{_e(scenario["name"])}</b><br>'
                     f'<small>{_e(scenario["description"])}</small></td>') if i == 0 else ""
            cell = scenario["agents"][agent]
            rows.append(_row(summary, agent, cell, scenario["improvement"], f"{cell['n']} of {k}", first,
                             ["first"] if i == 0 else []))
    total = k * len(summary["scenarios"])
    for i, agent in enumerate(agents):
        cell = summary["all_scenarios"]["agents"][agent]
        first = (f'<td class="name" rowspan="{len(agents)}"><b>all scenarios</b><br><small>IQM of all runs pooled; '
                 'P averaged over scenarios</small></td>') if i == 0 else ""
        rows.append(_row(summary, agent, cell, summary["all_scenarios"]["improvement"], f"{cell['n']} of {total}",
                         first, ["overall"] + (["first"] if i == 0 else [])))
    return ("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "\n".join(rows) + "</tbody></table>")


def _held_out(summary: dict) -> str:
    held = summary["held_out"]
    if held is None:
        return "<p>The results do not say which films and days the policy was trained on: the report cannot tell " \
               "whether the scenarios are held out.</p>"
    keys = list(dict.fromkeys([*held["trained_on"], *held["evaluated_on"]]))

    def values(side: str, key: str) -> str:
        got = held[side].get(key)
        return "&ndash;" if got is None else _e(", ".join("default" if v is None else str(v) for v in got) or "none")

    rows = "".join(f"<tr><td class=\"name\">{_e(key)}</td><td>{values('trained_on', key)}</td>"
                   f"<td>{values('evaluated_on', key)}</td></tr>" for key in keys)
    text = ("<p class=\"worse\">Not held out: " + _e("; ".join(f"{k} {', '.join(map(str, v))}" for k, v in
                                                           summary["held_out_overlap"].items()))
            + " appear in both training and evaluation.</p>") if summary["held_out_overlap"] else \
        "<p>No film or day the policy was evaluated on was in its training set.</p>"
    return ("<table><thead><tr><th></th><th>trained on</th><th>evaluated on</th></tr></thead><tbody>" + rows
            + "</tbody></table>" + text)


def _plots(summary: dict) -> bytes:
    """IQM with CI per scenario and agent, and P(candidate > baseline) with CI: one PNG."""
    agents = [summary["candidate"], *summary["baselines"]]
    labels = [s["name"] for s in summary["scenarios"]] + ["all scenarios"]
    cells = [s["agents"] for s in summary["scenarios"]] + [summary["all_scenarios"]["agents"]]
    improvements = [s["improvement"] for s in summary["scenarios"]] + [summary["all_scenarios"]["improvement"]]
    fig = Figure(figsize=(11, 1.2 + 0.45 * len(labels) * max(1, len(agents) / 2)), layout="constrained")
    ax_iqm, ax_p = fig.subplots(1, 2, sharey=True)
    rows = np.arange(len(labels))[::-1]

    def whiskers(ax, names, get, offset_span):
        for j, name in enumerate(names):
            offset = ((len(names) - 1) / 2 - j) * offset_span / max(1, len(names))  # the first on top
            points = [(row + offset, *get(i, name)) for i, row in enumerate(rows)]
            points = [p for p in points if p[1] is not None]
            if points:
                y, value, low, high = (np.array(v, dtype=float) for v in zip(*points))
                # Lines from low to high, not errorbar(): a percentile interval need not contain
                # its point estimate, and errorbar() refuses the negative error that gives.
                colour = _colour(summary, name)
                ax.hlines(y, low, high, color=colour, lw=2)
                ax.plot(value, y, "o", ms=6, color=colour, label=name)

    whiskers(ax_iqm, agents, lambda i, a: (cells[i][a]["iqm"], *(cells[i][a]["iqm_ci"] or (None, None))), 0.6)
    whiskers(ax_p, summary["baselines"], lambda i, b: (improvements[i][b]["p"],
                                                       *(improvements[i][b]["ci"] or (None, None))), 0.5)
    ax_iqm.set_yticks(rows, labels)
    ax_iqm.set_xlabel("IQM of episode returns (reward units), 95 % CI")
    ax_p.axvline(0.5, color="#888", ls="--", lw=1)
    ax_p.set_xlim(-0.03, 1.03)  # a little room: points at exactly 0 or 1 stay whole
    ax_p.set_xlabel(f"P({summary['candidate']} > baseline), 95 % CI; right of 0.5: {summary['candidate']} better")
    for ax, title in ((ax_iqm, "agent"), (ax_p, "baseline")):
        if ax.get_legend_handles_labels()[0]:  # none when no scenario is comparable
            # Below the axes, where it hides no point.
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, fontsize="small", title=title)
    for ax in (ax_iqm, ax_p):
        ax.axhline(rows[-1] + 0.5, color="#bbb", lw=0.8)
        ax.grid(axis="x", alpha=0.3)
    buffer = io.BytesIO()
    # No Software key: the PNG's bytes depend on the data only (and on matplotlib's drawing).
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    return buffer.getvalue()


def _images(summary: dict, data: dict) -> str:
    parts = []
    for scenario, raw in zip(summary["scenarios"], data["scenarios"]):
        boxes = []
        for agent in [summary["candidate"], *summary["baselines"]]:
            entry = raw["agents"][agent]
            figures = []
            for key, caption in (("before_png", "before"), ("after_png", "after")):
                png = entry[key]
                image = (f'<img src="{_data_uri(png)}" alt="{_e(agent)} {caption}: {_e(scenario["name"])}">'
                         if png is not None else '<div class="missing">no image</div>')
                figures.append(f"<figure>{image}<figcaption>{caption}</figcaption></figure>")
            boxes.append(f'<div class="agentimg"><h4>{_e(agent)}</h4><div class="pair">{"".join(figures)}</div></div>')
        parts.append(f"<h3>{_e(scenario['name'])}</h3><p class=\"meta\">{_e(scenario['description'])} &middot; "
                     f"<code>{_e(scenario['url'])}</code></p><div class=\"images\">{''.join(boxes)}</div>")
    return "\n".join(parts)


def _errors(summary: dict) -> str:
    rows = []
    for scenario in summary["scenarios"]:
        for agent, cell in scenario["agents"].items():
            counted: dict[str, int] = {}
            for message in cell["errors"]:
                counted[message] = counted.get(message, 0) + 1
            rows += [f"<tr><td class=\"name\">{_e(scenario['name'])}</td><td class=\"agent\">{_e(agent)}</td>"
                     f"<td>{n}</td><td class=\"name\"><pre>{_e(message)}</pre></td></tr>"
                     for message, n in counted.items()]
    if not rows:
        return "<p>No episode crashed.</p>"
    return ("<table><thead><tr><th>scenario</th><th>agent</th><th>episodes</th><th>error</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def render_html(data: Mapping, summary: dict, *, format_name: str, min_runs: int) -> str:
    """The report as one self-contained HTML page (inline CSS and images, no script, no link out).

    Args:
        data: the checked results the summary was computed from (for the images).
        summary: what ``scenarios.report.summarize`` returned for them.
        format_name: the JSON summary's format, named in the footer.
        min_runs: fewest completed episodes of either agent for a better/worse call.

    Returns:
        The HTML text.
    """
    s = summary
    candidate = s["candidate"]
    boot = s["bootstrap"]
    meta = (f"policy <code>{_e(s['policy'])}</code> &middot; suite <code>{_e(s['suite'])}</code> &middot; "
            f"{s['episodes']} episodes per scenario per agent (seed {s['seed']}) &middot; created {_e(s['created'])}"
            f" &middot; pfmtwin {_e(s['software_version'])}")
    verdict = "".join(f"<p>{_e(line)}</p>" for line in s["verdict"]["lines"])
    notes = (
        f"<p class=\"notes\"><b>How to read this.</b> A return is the total reward of one episode (reward units). "
        f"<b>IQM</b>: the mean of the middle 50 % of the episodes, robust to a few outliers; the bracket is its "
        f"95 % confidence interval from a stratified bootstrap ({boot['reps']} resamples of the episodes within "
        f"each scenario, seed {boot['seed']}). <b>P({_e(candidate)} &gt; baseline)</b>: the chance that an episode "
        f"of {_e(candidate)} scores higher than one of the baseline on the same scenario (ties count half); 0.5 is "
        f"no difference. <i>better</i>/<i>worse</i>: its interval lies wholly above/below 0.5; no call is made "
        f"with fewer than {min_runs} completed episodes of either agent. The intervals are "
        f"per scenario and not corrected for testing many scenarios. <b>Wall losses</b>: episodes that ended by "
        f"losing the wall. <b>Refused</b>: commands the safety guard refused. <b>Limit hits</b>: actions clipped "
        f"to a limit. <b>Crashes</b>: episodes that failed with an error (listed below); they have no return. "
        f"Time per step: wall-clock and simulated instrument seconds per environment step.</p>")
    body = [
        f"<h1>{_e(s['title'])}</h1>", f'<p class="meta">{meta}</p>',
        f'<section class="verdict"><h2>Verdict</h2>{verdict}</section>',
        f"<section><h2>Held-out films and days</h2>{_held_out(s)}</section>",
        f"<section><h2>Returns per scenario and agent</h2>{_table(s)}{notes}</section>",
        f'<section class="plots"><h2>Intervals</h2><img src="{_data_uri(_plots(s))}" '
        'alt="IQM with 95 % confidence intervals per scenario and agent; probability of improvement"></section>',
        f"<section><h2>Walls before and after</h2>{_images(s, data)}</section>",
        f"<section><h2>Errors</h2>{_errors(s)}</section>",
        f"<footer>Written by <code>scenarios.report</code> ({_e(format_name)}); the numbers are in the JSON summary "
        "beside this file.</footer>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            # The policy forbids every fetch but inline data: images and styles, so the page
            # provably needs no network (a stray link would show as a console error).
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(s['title'])}</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>{_CSS}</style></head>\n"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")


