"""``twin://`` URLs: open a :class:`TwinMicroscope` (registered under ``pfmtwin.backends``).

Example: ``twin://?seed=7&grid=128&field=1e-6&disorder=0.3&temperature=25``.
"""

from __future__ import annotations

from dataclasses import replace

import simpy

from control.errors import UrlError
from control.urls import Option, options, split
from twin.film import INITS, FilmParams
from twin.instrument import TwinConfig, TwinMicroscope
from twin.pfm import PfmParams
from twin.scanner import ScannerParams
from twin.tipfield import SpherePlaneTip


def _ranged(kind, lo, hi, unit=""):
    def convert(text: str):
        value = kind(text)
        if not lo <= value <= hi:
            raise ValueError(f"{value!r} is outside [{lo!r}, {hi!r}]{unit}")
        return value

    return convert


def _choice(text: str) -> str:
    if text not in INITS:
        raise ValueError(f"{text!r} is not one of {', '.join(INITS)}")
    return text


_FILM = FilmParams()
ACCEPTED = {
    "seed": Option(_ranged(int, 0, 2**63 - 1), 0, "int >= 0"),
    "grid": Option(_ranged(int, 32, 1024), _FILM.grid, "pixels per side, 32-1024"),
    "field": Option(_ranged(float, 0.1e-6, 10e-6, " m"), _FILM.size, "film side in m, 1e-7 to 1e-5"),
    "disorder": Option(_ranged(float, 0.0, 5.0), _FILM.disorder, "random-field strength, 0-5"),
    "temperature": Option(_ranged(float, -273.0, 480.0, " C"), _FILM.temperature, "deg C, below 480"),
    "thickness": Option(_ranged(float, 5e-9, 500e-9, " m"), _FILM.thickness, "film thickness in m"),
    "tip_radius": Option(_ranged(float, 2e-9, 300e-9, " m"), SpherePlaneTip().radius, "tip apex radius in m"),
    "noise": Option(_ranged(float, 0.0, 10.0), 1.0, "measurement-noise multiplier, 0-10"),
    "drift": Option(_ranged(float, 0.0, 1e-8, " m/s"), ScannerParams().drift_speed, "thermal drift speed in m/s"),
    "init": Option(_choice, _FILM.init, "|".join(INITS)),
}


def config_from_options(opts: dict) -> TwinConfig:
    """Build a :class:`TwinConfig` from converted ``twin://`` options."""
    pfm = PfmParams()
    film = replace(
        _FILM,
        grid=opts["grid"],
        size=opts["field"],
        disorder=opts["disorder"],
        temperature=opts["temperature"],
        thickness=opts["thickness"],
        init=opts["init"],
        tip=replace(SpherePlaneTip(), radius=opts["tip_radius"]),
    )
    return TwinConfig(
        seed=opts["seed"],
        film=film,
        scanner=replace(ScannerParams(), drift_speed=opts["drift"]),
        pfm=replace(
            pfm,
            noise=pfm.noise * opts["noise"],
            line_gain=pfm.line_gain * opts["noise"],
            flicker=pfm.flicker * opts["noise"],
            height_noise=pfm.height_noise * opts["noise"],
        ),
    )


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
    return config_from_options(opts), opts


def open_twin(url: str, env: simpy.Environment | None = None) -> TwinMicroscope:
    """Open the twin described by ``url`` on ``env`` (default: a new virtual-time environment)."""
    config, opts = parse_twin_url(url)
    return TwinMicroscope(config, url=url, options=opts, env=env)
