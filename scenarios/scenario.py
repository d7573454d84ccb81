"""Scenario files: one TOML file says what to run, where, on what sample, and within what limits.

A scenario is what a microscopist would write in a lab notebook before an experiment: the
instrument (a backend URL, or an emulator or co-simulation to start), the metadata that goes
into the session file, the safety limits tightened for this run, the plan, and a seed::

    name = "wall-pulse"                 # default: the file's stem
    description = "the talk's loop on a fresh film"
    seed = 1                            # the plan's own choices (pulse sites, biases, widths)

    [metadata]                          # written into the session file; searchable in the catalog
    project = "walls"
    investigator = "ada"
    sample = "PTO-110"
    material = "PbTiO3"

    [backend]                           # either a URL ...
    url = "twin://?seed=3&day=0&grid=128&field=1e-6&init=wall"
    # ... or a process to start and reach over the wire protocol:
    # serve = "emulate"                 # or "cosim"
    # twin = "seed=3&grid=128&init=wall"
    # faults = "drop=0.01,drift_burst_at=3"   # emulate only (emulator.faults)
    # fault_seed = 0
    # speed = "max"                     # emulate only: "max" or a factor of real time

    [limits]                            # any SafetyLimits field; may only tighten the instrument's
    bias_max = 8.0

    [plan]
    kind = "wall-pulse"                 # locate the wall, pulse at a point on it, re-scan
    pulses = 6
    rescan_every = 2
    bias = [4.0, 8.0]                   # V magnitude: a number, or [low, high] drawn uniformly
    polarity = "both"                   # the sign: "both" (random), "positive", "negative"
    width = [1e-4, 1e-2]                # s: a number, or [low, high] drawn log-uniformly

    [plan.scan]                         # the image the plan takes (defaults shown)
    size = 1e-6                         # m (default: half the scanner range, at most 1 um)
    pixels = 64
    line_rate = 10.0                    # Hz
    # center = [x, y]                   # m (default: the middle of the scanner range)

    # [plan] kind = "policy": a policy file from `pfmtwin agent train` on pfmtwin/DomainWall-v0
    # policy = "wall.pt"                # relative to this file
    # episodes = 2
    # env = { max_steps = 10 }          # DomainWall-v0 keyword arguments overriding the file's

    [run]
    timeout = 600                       # s of wall time before a stress run counts as hung

A bad file is a :class:`ScenarioError` that names the file, the line and the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from control.errors import PfmTwinError
from control.limits import SafetyLimits

__all__ = ["KINDS", "SERVES", "Backend", "PolicyPlan", "Scenario", "ScenarioError", "ScanPlan", "WallPulsePlan",
           "find_scenario", "load_scenario", "load_suite"]

#: Plans a scenario can run.
KINDS = ("wall-pulse", "policy")
#: Processes a scenario can start to reach its instrument over the wire protocol.
SERVES = ("emulate", "cosim")
#: Default wall-time budget of one run in a stress suite, s.
DEFAULT_TIMEOUT = 600.0


class ScenarioError(PfmTwinError, ValueError):
    """A scenario file that cannot be run: the message names the file, the line and the key."""


@dataclass(frozen=True)
class Backend:
    """Where the scenario's instrument is.

    Attributes:
        url: a backend URL for ``control.connect`` (empty when ``serve`` is set).
        serve: "emulate" or "cosim": start ``pfmtwin <serve>`` on loopback and connect to it.
        twin: twin options of the served process, as in ``twin://`` URLs.
        faults: fault plan of a served emulator (``emulator.faults`` syntax).
        fault_seed: seed of the fault injection.
        speed: a served emulator's clock: "max" or a factor of real time.
    """

    url: str = ""
    serve: str = ""
    twin: str = ""
    faults: str = ""
    fault_seed: int = 0
    speed: str = "max"

    def describe(self) -> str:
        """The URL, or what is served (for tables and session metadata)."""
        if not self.serve:
            return self.url
        extra = f" faults={self.faults}" if self.faults else ""
        return f"{self.serve} twin://?{self.twin}{extra}"


@dataclass(frozen=True)
class ScanPlan:
    """The image a plan takes: centre and size in m (None: from the instrument), pixels, Hz."""

    center: tuple[float, float] | None = None
    size: float | None = None
    pixels: int = 64
    line_rate: float = 10.0


@dataclass(frozen=True)
class WallPulsePlan:
    """The talk's loop: locate the wall, pulse at a random point on it, re-scan every few pulses.

    Attributes:
        pulses: bias pulses to apply.
        rescan_every: scan again after this many pulses (the wall is re-located from it).
        bias: (low, high) pulse magnitude, V, drawn uniformly (low == high: fixed).
        polarity: "both" (random sign), "positive" or "negative".
        width: (low, high) pulse width, s, drawn log-uniformly (low == high: fixed).
        scan: the image taken before, between and after the pulses.
    """

    pulses: int = 6
    rescan_every: int = 2
    bias: tuple[float, float] = (4.0, 10.0)
    polarity: str = "both"
    width: tuple[float, float] = (1e-5, 1e-2)
    scan: ScanPlan = field(default_factory=ScanPlan)
    kind: str = "wall-pulse"


@dataclass(frozen=True)
class PolicyPlan:
    """Run a trained agent on ``pfmtwin/DomainWall-v0`` over the scenario's instrument.

    Attributes:
        policy: the policy file (absolute, resolved against the scenario file).
        episodes: episodes to run; they continue on the same sample, as on a real instrument.
        particle: which particle of the file (None: the best final return).
        sample: draw actions from the policy instead of taking its mean.
        env: DomainWall-v0 keyword arguments overriding the file's (not ``microscope``).
    """

    policy: Path
    episodes: int = 1
    particle: int | None = None
    sample: bool = False
    env: dict = field(default_factory=dict)
    kind: str = "policy"


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario file (see the module docstring)."""

    path: Path
    name: str
    description: str
    seed: int
    metadata: dict
    backend: Backend
    limits: dict
    plan: WallPulsePlan | PolicyPlan
    timeout: float = DEFAULT_TIMEOUT
    variant: str | None = None


# -- parsing with file, line and key in every message ---------------------------------------------


class _Source:
    """A TOML file's text, to point at the line of a key in error messages."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.lines = path, text.splitlines()

    def line_of(self, table: str, key: str) -> int | None:
        """1-based line of ``key`` in ``[table]`` (dotted), or of the table header; None if absent."""
        current, header = "", None
        inline = re.compile(rf"^\s*{re.escape(table.rpartition('.')[2])}\s*=\s*\{{") if table else None
        for number, line in enumerate(self.lines, 1):
            stripped = line.split("#", 1)[0].strip()
            match = re.match(r"^\[\s*([A-Za-z0-9_.\-\" ]+?)\s*\]$", stripped)
            if match:
                current = match.group(1).replace('"', "").replace(" ", "")
                if current == table:
                    header = number
                continue
            if current == table and re.match(rf"^{re.escape(key)}\s*=", stripped):
                return number
            if inline is not None and current == table.rpartition(".")[0] and inline.match(stripped) \
                    and re.search(rf"[{{,]\s*{re.escape(key)}\s*=", stripped):
                return number  # a key inside an inline table, e.g. env = { max_steps = 10 }
        return header

    def error(self, table: str, key: str, problem: str) -> ScenarioError:
        line = self.line_of(table, key)
        where = f"{self.path}" + (f", line {line}" if line else "")
        name = f"{table}.{key}" if table else key
        return ScenarioError(f"{where}: {name}: {problem}")


class _Table:
    """One table of the file: typed getters that raise with the file, the line and the key."""

    def __init__(self, source: _Source, name: str, values: dict, known: tuple[str, ...] | None) -> None:
        if not isinstance(values, dict):
            raise source.error("", name, f"must be a table ([{name}]), not {type(values).__name__}")
        self.source, self.name, self.values = source, name, values
        if known is not None:
            for key in values:
                if key not in known:
                    raise source.error(name, key, f"unknown key; accepted in [{name or 'top level'}]: "
                                                  f"{', '.join(known)}")

    def error(self, key: str, problem: str) -> ScenarioError:
        return self.source.error(self.name, key, problem)

    def text(self, key: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> str:
        value = self.values.get(key, default)
        if value is None:
            raise self.error(key, "is required" + (f"; one of {', '.join(choices)}" if choices else ""))
        if not isinstance(value, str):
            raise self.error(key, f"{value!r} must be a string")
        if choices is not None and value not in choices:
            raise self.error(key, f"{value!r} is not one of {', '.join(map(repr, choices))}")
        return value

    def integer(self, key: str, default: int | None, low: int = 0, high: int = 10**9) -> int | None:
        value = self.values.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"{value!r} must be an integer in [{low}, {high}]")
        if not low <= value <= high:
            raise self.error(key, f"{value!r} is outside [{low}, {high}]")
        return value

    def number(self, key: str, default: float | None, unit: str, low: float = -math.inf,
               high: float = math.inf, positive: bool = False) -> float | None:
        value = self.values.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(key, f"{value!r} must be a finite number ({unit})")
        if (positive and value <= 0) or not low <= value <= high:
            bound = "> 0" if positive else f"in [{low}, {high}]"
            raise self.error(key, f"{value!r} {unit} must be {bound}")
        return float(value)

    def span(self, key: str, default: tuple[float, float], unit: str, positive: bool = False) -> tuple[float, float]:
        """A number (fixed) or [low, high]."""
        value = self.values.get(key, list(default))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value, value]
        if not (isinstance(value, list) and len(value) == 2):
            raise self.error(key, f"{value!r} must be a number or [low, high] ({unit})")
        pair = tuple(_Table(self.source, self.name, {key: v}, None).number(key, None, unit, positive=positive)
                     for v in value)
        if pair[0] > pair[1]:
            raise self.error(key, f"{value!r}: low must not exceed high")
        return pair  # type: ignore[return-value]

    def table(self, key: str, known: tuple[str, ...] | None) -> _Table:
        return _Table(self.source, f"{self.name}.{key}" if self.name else key, self.values.get(key, {}), known)


def _plan(root: _Table, base: Path) -> WallPulsePlan | PolicyPlan:
    if "plan" not in root.values:
        raise root.source.error("", "plan", f"is required: a [plan] table with kind = one of {', '.join(KINDS)}")
    kind = root.table("plan", None).text("kind", None, KINDS)
    if kind == "wall-pulse":
        plan = root.table("plan", ("kind", "pulses", "rescan_every", "bias", "polarity", "width", "scan"))
        scan = plan.table("scan", ("center", "size", "pixels", "line_rate"))
        center = scan.values.get("center")
        if center is not None:
            if not (isinstance(center, list) and len(center) == 2):
                raise scan.error("center", f"{center!r} must be [x, y] in m")
            center = tuple(_Table(scan.source, scan.name, {"center": v}, None).number("center", None, "m")
                           for v in center)
        pulses = plan.integer("pulses", 6, 0, 100_000)
        return WallPulsePlan(
            pulses=pulses,
            rescan_every=plan.integer("rescan_every", max(1, min(2, pulses)), 1, 100_000),
            bias=plan.span("bias", (4.0, 10.0), "V"),
            polarity=plan.text("polarity", "both", ("both", "positive", "negative")),
            width=plan.span("width", (1e-5, 1e-2), "s", positive=True),
            scan=ScanPlan(center=center, size=scan.number("size", None, "m", positive=True),
                          pixels=scan.integer("pixels", 64, 2, 65536),
                          line_rate=scan.number("line_rate", 10.0, "Hz", positive=True)),
        )
    plan = root.table("plan", ("kind", "policy", "episodes", "particle", "sample", "env"))
    policy = (base / plan.text("policy")).resolve()
    if not policy.is_file():
        raise plan.error("policy", f"{str(policy)!r} does not exist; give a policy file from `pfmtwin agent train`, "
                                   "relative to the scenario file")
    env = plan.values.get("env", {})
    if not isinstance(env, dict):
        raise plan.error("env", f"{env!r} must be a table of DomainWall-v0 keyword arguments")
    if "microscope" in env:
        raise plan.error("env", "'microscope' comes from [backend]; drop it here")
    sample = plan.values.get("sample", False)
    if not isinstance(sample, bool):
        raise plan.error("sample", f"{sample!r} must be true or false")
    return PolicyPlan(policy=policy, episodes=plan.integer("episodes", 1, 1, 100_000),
                      particle=plan.integer("particle", None, 0, 10_000), sample=sample, env=dict(env))


def load_scenario(path: str | PathLike, text: str | None = None) -> Scenario:
    """Read and check a scenario file.

    Args:
        path: the TOML file.
        text: its content, if already read (a suite's matrix builds scenarios from one file).

    Raises:
        ScenarioError: the file is missing or not TOML, or a key is unknown, missing or of the
            wrong type or range; the message names the file, the line and the key.
    """
    path = Path(path)
    if text is None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ScenarioError(f"{path}: cannot read the scenario file ({exc.strerror or exc})") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return _parse(path, _Source(path, text), values)


def _parse(path: Path, source: _Source, values: dict) -> Scenario:
    """Check the values of one scenario (``source`` points messages at the file's lines)."""
    root = _Table(source, "", values, ("name", "description", "seed", "metadata", "backend", "limits", "plan", "run"))
    meta = root.table("metadata", None)
    for key, value in meta.values.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise meta.error(key, f"{value!r} must be a string or a number")
    backend_t = root.table("backend", ("url", "serve", "twin", "faults", "fault_seed", "speed"))
    serve = backend_t.text("serve", "", ("",) + SERVES)
    url = backend_t.text("url", "")
    if bool(url) == bool(serve):
        raise backend_t.error("url" if url else "serve", "give either url (a backend URL) or serve "
                                                         f"({' or '.join(SERVES)}) with twin options, not "
                                                         + ("both" if url else "neither"))
    if serve != "emulate":
        for key in ("faults", "speed"):
            if key in backend_t.values:
                raise backend_t.error(key, "applies only to serve = \"emulate\"")
    backend = Backend(url=url, serve=serve, twin=backend_t.text("twin", ""), faults=backend_t.text("faults", ""),
                      fault_seed=backend_t.integer("fault_seed", 0), speed=backend_t.text("speed", "max"))
    limits_t = root.table("limits", None)
    try:
        SafetyLimits._known(limits_t.values, "[limits]")
    except PfmTwinError as exc:
        key = next(k for k in limits_t.values if k not in SafetyLimits.UNITS)
        raise limits_t.error(key, str(exc)) from None
    limits = {k: tuple(v) if isinstance(v, list) else v for k, v in limits_t.values.items()}
    run = root.table("run", ("timeout",))
    return Scenario(
        path=path, name=root.text("name", path.stem), description=root.text("description", ""),
        seed=root.integer("seed", 0, 0, 2**63 - 1), metadata=dict(meta.values), backend=backend, limits=limits,
        plan=_plan(root, path.parent), timeout=run.number("timeout", DEFAULT_TIMEOUT, "s", positive=True),
    )


def load_suite(path: str | PathLike) -> list[Scenario]:
    """The scenarios of a suite: a folder of ``*.toml`` files (sorted by name), or one file.

    A file with a ``[[variant]]`` array is a matrix: its other tables are the base scenario and
    each variant is a table of overrides (``name`` required, dotted tables merged), e.g.::

        [[variant]]
        name = "noise-x3"
        backend = { url = "twin://?seed=3&noise=3&init=wall" }

    Raises:
        ScenarioError: no scenario found, a duplicate name, or a bad file (as :func:`load_scenario`).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.toml"))
        if not files:
            raise ScenarioError(f"{path}: no *.toml scenario files in this folder")
        scenarios = [s for f in files for s in _expand(f)]
    elif path.is_file():
        scenarios = _expand(path)
    else:
        raise ScenarioError(f"{path}: no such suite; give a folder of scenario files or one file")
    names = [s.name for s in scenarios]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ScenarioError(f"{path}: scenario name(s) {duplicates!r} used twice; give each a unique name")
    return scenarios


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _expand(path: Path) -> list[Scenario]:
    """One scenario, or one per ``[[variant]]`` of a matrix file."""
    try:
        text = path.read_text()
        values = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file ({exc})") from None
    variants = values.pop("variant", None)
    if variants is None:
        return [load_scenario(path, text)]
    source = _Source(path, text)
    if not isinstance(variants, list) or not variants:
        raise source.error("", "variant", "must be an array of tables ([[variant]]) with a name each")
    scenarios = []
    for i, variant in enumerate(variants):
        if not isinstance(variant, dict) or not isinstance(variant.get("name"), str):
            raise source.error("variant", "name", f"variant {i + 1} needs name = \"...\"")
        merged = _merge(values, variant)
        scenarios.append(_from_values(path, merged, f"{path} [[variant]] {variant['name']!r}", text))
    return scenarios


def _from_values(path: Path, values: dict, label: str, text: str) -> Scenario:
    """A scenario from already-merged values (a matrix variant); messages name the variant."""
    source = _Source(path, text)
    source.path = label  # type: ignore[assignment]
    return dataclasses.replace(_parse(path, source, values), variant=values["name"])


def find_scenario(path: str | os.PathLike, variant: str | None = None) -> Scenario:
    """One scenario: the file itself, or the variant of that name of a matrix file.

    Raises:
        ScenarioError: a bad file; a matrix file without ``variant``; no variant of that name.
    """
    scenarios = _expand(Path(path)) if Path(path).is_file() else load_suite(path)
    if variant is None:
        if len(scenarios) > 1 or scenarios[0].variant is not None:
            names = ", ".join(s.name for s in scenarios)
            raise ScenarioError(f"{path}: a matrix of {len(scenarios)} scenarios ({names}); pick one with --variant NAME "
                                "or run them all with `pfmtwin stress`")
        return scenarios[0]
    for scenario in scenarios:
        if scenario.name == variant:
            return scenario
    raise ScenarioError(f"{path}: no variant named {variant!r}; accepted: {', '.join(s.name for s in scenarios)}")
