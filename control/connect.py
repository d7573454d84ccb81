"""``connect(url)``: the one place a backend is chosen, by URL scheme.

Backends register an opener under the entry-point group ``pfmtwin.backends`` (scheme ->
``opener(url) -> Backend``), so ``control`` never imports a backend. The returned
:class:`Guarded` microscope validates every command against the safety limits before the
backend sees it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace
from importlib.metadata import entry_points

import numpy as np

from control.contract import Backend, InstrumentInfo, LineCallback, PulseRecord, ScanResult, ScanSpec
from control.errors import InstrumentError, InvalidArgumentError, UrlError
from control.limits import SafetyLimits, shown
from control.spectroscopy import Band, BEImage, BEPSResult, BEPSSpec, BEResult, check_band, check_be_image, check_beps
from control.urls import split

GROUP = "pfmtwin.backends"


@functools.lru_cache(maxsize=1)
def _registered() -> tuple:
    # Reading the installed packages' metadata takes about 11 ms, and agents open a microscope
    # per rollout or episode: it is read once per process (a package installed while the process
    # runs is seen by the next one).
    return tuple(entry_points(group=GROUP))


def backends() -> dict[str, object]:
    """Registered backend schemes -> entry points."""
    return {ep.name: ep for ep in _registered()}


def _is_device(url: str) -> bool:
    """A serial device path (``/dev/ttyUSB0``, a pty or socat link such as ``/tmp/ttyV0``) or ``COM3``."""
    return isinstance(url, str) and "://" not in url and (url.startswith("/") or url.upper().startswith("COM"))


def open_backend(url: str) -> Backend:
    """Open the raw backend for ``url`` (no safety checks: use :func:`connect`).

    Registered schemes go to their opener; pyserial URLs (``socket://``, ``rfc2217://``,
    ``spy://``, ``loop://``, ...) and device paths (``/dev/ttyUSB0``, ``COM3``) go to the
    serial client, which speaks the wire protocol to a real controller or to the emulator.
    """
    from control.serial_client import SERIAL_SCHEMES, open_serial

    if _is_device(url):
        return open_serial(url)
    scheme, _, _ = split(url)
    registry = backends()
    if scheme in registry:
        return registry[scheme].load()(url)
    if scheme in SERIAL_SCHEMES:
        return open_serial(url)
    known = ", ".join(f"{s}://" for s in sorted(registry) + sorted(SERIAL_SCHEMES))
    raise UrlError(
        f"no backend for scheme {scheme!r} in {url!r}; accepted: {known}, or a serial device path such as /dev/ttyUSB0"
    )


def connect(url: str, *, limits: SafetyLimits | Mapping[str, object] | None = None) -> Guarded:
    """Open the instrument at ``url``.

    Args:
        url: e.g. ``"twin://?seed=7"``.
        limits: safety limits, at most as wide as the hardware; or a mapping of limit name ->
            value that tightens the backend's own (``{"bias_max": 5.0}``, see
            :meth:`SafetyLimits.tightened`); default: the backend's.

    Returns:
        A :class:`Guarded` microscope; use it as a context manager.

    Raises:
        UrlError: unknown scheme or option.
        InvalidArgumentError: ``limits`` is not a SafetyLimits (checked before anything is opened).
        LimitError: ``limits`` wider than the hardware (or, as a mapping, than the backend's own).
    """
    _check_limits_type(limits)
    return Guarded(open_backend(url), limits)


def _check_limits_type(limits: object) -> None:
    if limits is not None and not isinstance(limits, (SafetyLimits, Mapping)):
        raise InvalidArgumentError(
            f"limits={shown(limits)} is a {type(limits).__name__}; pass a control.SafetyLimits (e.g. "
            f"SafetyLimits.from_hardware(info.hardware, bias_max=5.0) with the instrument's info()) or None "
            f"for the instrument's own, or a dict tightening them, e.g. {{'bias_max': 5.0}}"
        )


class Guarded:
    """A microscope whose every command is validated before the backend sees it.

    A rejected command raises and leaves the instrument, its state and its clock untouched.
    """

    def __init__(self, backend: Backend, limits: SafetyLimits | Mapping[str, object] | None = None) -> None:
        try:
            _check_limits_type(limits)
            info = backend.info()
            if isinstance(limits, Mapping):
                limits = info.limits.tightened(**limits)
            self._limits = limits if limits is not None else info.limits
            self._limits.check_within(info.hardware)
        except Exception:
            backend.close()
            raise
        self._hardware = info.hardware
        self._name = info.backend
        self._backend = backend
        self._closed = False

    @property
    def limits(self) -> SafetyLimits:
        """The safety limits in force."""
        return self._limits

    def _live(self) -> Backend:
        if self._closed:
            raise InstrumentError("the microscope is closed; open a new one with control.connect(url)")
        return self._backend

    def info(self) -> InstrumentInfo:
        """Identity, versions, hardware spec and the limits in force."""
        return replace(self._live().info(), limits=self._limits)

    def move_tip(self, x: float, y: float, *, speed: float | None = None) -> None:
        """Move the tip to (x, y), m, at ``speed`` m/s (default: the fastest allowed)."""
        backend = self._live()
        backend.move_tip(*self._limits.check_move(x, y, speed))

    def scan(self, spec: ScanSpec, *, on_line: LineCallback | None = None) -> ScanResult:
        """Acquire an image described by ``spec``.

        Args:
            spec: what to acquire.
            on_line: called with (index, start time, channels of that line) as each line
                arrives, in instrument time (for live display or early stopping of analysis).
        """
        backend = self._live()
        if not isinstance(spec, ScanSpec):
            raise InvalidArgumentError(f"spec={shown(spec)} is a {type(spec).__name__}; pass a control.ScanSpec")
        if on_line is not None and not callable(on_line):
            raise InvalidArgumentError(
                f"on_line={shown(on_line)} is a {type(on_line).__name__}; pass a function f(index, t, channels) or None"
            )
        self._limits.check_scan(spec)
        return backend.scan(spec, on_line)

    def apply_pulse(self, x: float, y: float, amplitude: float, width: float) -> PulseRecord:
        """Move to (x, y), m, and apply a bias pulse of ``amplitude`` V for ``width`` s."""
        backend = self._live()
        return backend.apply_pulse(*self._limits.check_pulse_at(x, y, amplitude, width))

    def band_excitation(self, x: float, y: float, band: Band | None = None) -> BEResult:
        """Move to (x, y), m, and read the cantilever's response to a band of drive frequencies.

        ``band``: a :class:`control.spectroscopy.Band` (center, width, drive amplitude, duration,
        bins); default ``Band()``, 64 bins over 60 kHz around the contact resonance, 4 ms.
        """
        backend = self._live()
        xf, yf = self._limits.check_position(x, y, what="band excitation point")
        band = check_band(Band() if band is None else band, self._limits, self._hardware)
        return self._waveform(backend, "band_excitation", "band excitation")(xf, yf, band)

    def be_image(self, spec: ScanSpec, band: Band | None = None, *,
                 on_line: LineCallback | None = None) -> BEImage:
        """A band-excitation read-out at every pixel of a raster, line by line (the tip parks at
        each pixel for the band's duration). ``on_line(index, t, response)`` is called as each
        line is done, with that line's (points, bins) response. Fit it with
        ``control.sho.fit_sho(image.frequencies, image.response)`` for amplitude, phase, resonance
        and Q maps."""
        backend = self._live()
        band = check_be_image(spec, Band() if band is None else band, self._limits, self._hardware)
        read = self._waveform(backend, "band_excitation", "band excitation")
        xs, ys = spec.positions()
        ny, nx = spec.shape
        response = np.empty((ny, nx, band.bins), dtype=complex)
        times = np.empty((ny, nx))
        for i in range(ny):
            for j in range(nx):
                r = read(float(xs[i, j]), float(ys[i, j]), band)
                response[i, j], times[i, j] = r.response, r.start
            if on_line is not None:
                on_line(i, float(times[i, 0]), response[i])
        return BEImage(spec=spec, band=band, frequencies=band.frequencies(), response=response, times=times)

    def beps(self, spec: BEPSSpec) -> BEPSResult:
        """Switching spectroscopy (:class:`control.spectroscopy.BEPSSpec`): a DC bias waveform with
        a band-excitation read-out, DC on and off, at each step, at each point. The DC steps
        write the sample as pulses of their bias and length do, and what they wrote stays."""
        backend = self._live()
        spec = check_beps(spec, self._limits, self._hardware)
        return self._waveform(backend, "beps", "switching spectroscopy (BEPS)")(spec)

    def _waveform(self, backend: Backend, verb: str, what: str):
        method = getattr(backend, verb, None)
        if method is None:
            raise InstrumentError(
                f"the {self._name!r} backend does not do {what} yet; the twin, the emulator and co-simulation do")
        return method

    def now(self) -> float:
        """Instrument time, s."""
        return self._live().now()

    def close(self) -> None:
        """Release the instrument; further calls raise ``InstrumentError``. Idempotent."""
        if not self._closed:
            self._closed = True
            self._backend.close()

    def __enter__(self) -> Guarded:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
