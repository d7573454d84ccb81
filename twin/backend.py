"""``twin://`` URLs: open a :class:`TwinMicroscope` (registered under ``pfmtwin.backends``).

Example: ``twin://?seed=7&day=2&grid=128&field=1e-6&disorder=0.3&temperature=25``.

``seed`` chooses the sample (its domains, disorder, topography and d33 map); ``day`` the
instrument's state that day (:class:`twin.day.Day`: tip, gain, phase offset, drift, noise).
``tip_radius`` and ``drift``, when given, override the day's values; ``noise`` multiplies the
day's noise levels.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import simpy

from control.errors import UrlError
from control.urls import Option, options, split
from twin.day import Day
from twin.film import INITS, FilmParams
from twin.instrument import TwinConfig, TwinMicroscope
from twin.pfm import PfmParams
from twin.scanner import ScannerParams
from twin.tipfield import SpherePlaneTip


def _ranged(kind, lo, hi, unit=""):
    def convert(text: str):
        if not text.isascii():  # int() and float() accept other scripts' digits ("٣" is 3)
            raise ValueError(f"{text!r} is not written with ASCII digits 0-9")
        value = kind(text)
        if not lo <= value <= hi:
            raise ValueError(f"{value!r} is outside [{lo!r}, {hi!r}]{unit}")
        return value

    return convert


def _init(text: str) -> str:
    """One of INITS, or the path of an NSID file whose phase image gives the domains."""
    if text in INITS:
        return text
    if not Path(text).is_file():
        raise ValueError(f"{text!r} is neither one of {', '.join(INITS)} nor an existing NSID file")
    return text


def _choice(*choices: str):
    def convert(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return convert


_FILM = FilmParams()
#: Default pixel pitch of the film, m: the writing kinetics are calibrated at this pitch.
PIXEL = 2e-6 / 256
ACCEPTED = {
    "seed": Option(_ranged(int, 0, 2**63 - 1), 0, "int >= 0: the sample"),
    "day": Option(_ranged(int, 0, 2**31 - 1), 0, "int >= 0: the instrument's day"),
    "grid": Option(_ranged(int, 32, 2048), None, "pixels per side, 32-2048 (default: 7.8 nm pixels)"),
    "field": Option(_ranged(float, 0.1e-6, 10e-6, " m"), None,
                    "film side in m, 1e-7 to 1e-5, also the scanner's range (default 5.25e-6, or the size of the init image)",
                    "m"),
    "disorder": Option(_ranged(float, 0.0, 5.0), _FILM.disorder, "random-field strength, 0-5"),
    "temperature": Option(_ranged(float, -273.0, 480.0, " C"), _FILM.temperature, "deg C, below 480", "degC"),
    "thickness": Option(_ranged(float, 5e-9, 500e-9, " m"), _FILM.thickness, "film thickness in m", "m"),
    "tip_radius": Option(_ranged(float, 2e-9, 300e-9, " m"), None, "tip apex radius in m (default: the day's)",
                         "m"),
    "noise": Option(_ranged(float, 0.0, 10.0), 1.0, "multiplier of the day's measurement noise, 0-10"),
    "texture": Option(_ranged(float, 0.0, 1.0), 1.0, "share of the film's a/c non-uniformity, 0 (uniform) to 1"),
    "drift": Option(_ranged(float, 0.0, 1e-8, " m/s"), None, "thermal drift speed in m/s (default: the day's)",
                    "m/s"),
    "scanner": Option(_choice("open", "closed"), "open", "open (hysteresis and creep) | closed (sensor noise)"),
    "init": Option(_init, _FILM.init, "|".join(INITS) + "|PATH of an NSID phase image"),
}


def config_from_options(opts: dict) -> TwinConfig:
    """Build a :class:`TwinConfig` from converted ``twin://`` options."""
    day = Day.draw(opts["seed"], opts["day"])
    init = opts["init"]
    field = opts["field"]
    if field is None:
        field = _init_image_size(init) if init not in INITS else _FILM.size
    grid = opts["grid"]
    if grid is None:  # the physics is calibrated at 7.8 nm pixels (2 um on 256)
        grid = int(np.clip(round(field / PIXEL), 32, 2048))
    radius = opts["tip_radius"] if opts["tip_radius"] is not None else day.tip_radius
    film = replace(
        _FILM,
        grid=grid,
        size=field,
        disorder=opts["disorder"],
        temperature=opts["temperature"],
        thickness=opts["thickness"],
        init=init,
        tip=replace(SpherePlaneTip(), radius=radius),
    )
    pfm = PfmParams()
    noise = opts["noise"]
    scanner = ScannerParams()
    return TwinConfig(
        seed=opts["seed"],
        day=opts["day"],
        film=film,
        scanner=replace(
            scanner,
            drift_speed=opts["drift"] if opts["drift"] is not None else day.drift_speed,
            drift_angle=day.drift_angle,
            closed_loop=opts["scanner"] == "closed",
            sensor_noise=scanner.sensor_noise * noise,
        ),
        pfm=replace(
            pfm,
            gain=day.gain,
            texture_amount=opts["texture"],
            phase_offset=day.phase_offset,
            noise=pfm.noise * day.noise * noise,
            line_offset=pfm.line_offset * day.line_offset * noise,
            line_gain=pfm.line_gain * day.line_offset * noise,
            height_noise=pfm.height_noise * noise,
            height_line_offset=pfm.height_line_offset * noise,
        ),
    )


def _init_image_size(path: str) -> float:
    """Side of the film that holds the NSID image at ``path`` at its own scale, m."""
    from control.nsid import read_scan

    spec = read_scan(path).spec
    size = max(spec.size)
    if not 0.1e-6 <= size <= 10e-6:
        raise UrlError(f"the image in {path!r} is {size!r} m wide; a twin film is 1e-7 to 1e-5 m: give field=")
    return size


def parse_twin_url(url: str) -> tuple[TwinConfig, dict]:
    """The configuration and converted options of a ``twin://?option=value&...`` URL.

    Raises:
        UrlError: an address after ``twin://``, an unknown option or a bad value.
    """
    scheme, address, raw = split(url)
    if scheme != "twin":
        raise UrlError(f"{url!r} is not a twin:// URL")
    if address not in ("", "/"):
        raise UrlError(f"twin URLs take no address, got {address!r} in {url!r}; write twin://?seed=7")
    opts = options(url, raw, ACCEPTED)
    config = config_from_options(opts)
    opts["field"] = config.film.size
    opts["grid"] = config.film.grid
    opts["tip_radius"] = config.film.tip.radius
    opts["drift"] = config.scanner.drift_speed
    return config, opts


def open_twin(url: str, env: simpy.Environment | None = None) -> TwinMicroscope:
    """Open the twin described by ``url`` on ``env`` (default: a new virtual-time environment)."""
    config, opts = parse_twin_url(url)
    units = {name: option.unit for name, option in ACCEPTED.items() if option.unit}
    return TwinMicroscope(config, url=url, options=opts, option_units=units, env=env)
