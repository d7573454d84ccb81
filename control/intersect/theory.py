"""Theory as a service: the twin's physics, started from an observed image, predicts what a pulse will do.

:class:`TheoryCapability` (capability ``Theory``) answers ``predict``: given an observed raster
scan (its spec and phase image) and proposed pulses, it builds a film from the image, as
``twin://?init=PATH`` does (the image's domains on a film of the image's size, relaxed), and for
each pulse applies it to a fresh copy of that film and scans it again. It answers the predicted
wall (its x on every line, traced by ``control.analysis.trace_wall`` as for a measurement), the
mean wall displacement, the area the pulse switched, and the seconds each prediction took.

The film's physics (its disorder, tip and noise) is the theory's own: the ``theory`` URL's
options, e.g. ``twin://?seed=3&grid=64&noise=0``. Its seed need not be the sample's: a real sample's
disorder is unknown. Which phase is "up" cannot be read from an image alone (the lock-in's phase
offset), so the request says it (``up_phase``, from a test pulse, as a microscopist calibrates).
"""


import tempfile
import time
from pathlib import Path

import numpy as np
from intersect_sdk import (
    IntersectBaseCapabilityImplementation,
    IntersectCapabilityError,
    intersect_message,
    intersect_status,
)
from pydantic import BaseModel, Field

from control.analysis import domains, phase_axis, trace_wall
from control.connect import connect
from control.contract import ScanResult, ScanSpec, wrap_phase
from control.errors import PfmTwinError
from control.intersect.models import Array, RequestId
from control.urls import split, with_options

THEORY = "Theory"


class ObservedImage(BaseModel):
    """A raster scan as observed: where (m) and its phase image (deg), shape (lines, points)."""

    center: tuple[float, float] = Field(description="m")
    size: tuple[float, float] = Field(description="m")
    phase: Array = Field(description="deg, shape (lines, points)")
    up_phase: float = Field(description="phase of an up (+P) domain on this instrument, deg")


class ProposedPulse(BaseModel):
    x: float = Field(description="m, in the microscope's coordinates")
    y: float = Field(description="m")
    amplitude: float = Field(description="V")
    width: float = Field(description="s")


class PredictRequest(BaseModel):
    request_id: RequestId
    image: ObservedImage
    pulses: list[ProposedPulse] = Field(min_length=1, max_length=64)


class Prediction(BaseModel):
    wall_x: Array = Field(description="predicted wall x on each line of the image, m (NaN: no wall)")
    displacement: float | None = Field(description="mean wall displacement along x, m (None: no wall after or before)")
    written_area: float = Field(description="area whose polarization the pulse switched, m^2")
    seconds: float = Field(description="wall-clock time of this prediction, s")


class PredictResponse(BaseModel):
    request_id: RequestId
    predictions: list[Prediction]
    seconds: float = Field(description="wall-clock time of the whole request, s")


class TheoryStatus(BaseModel):
    theory_url: str = Field(description="the twin:// URL of the theory's physics")
    requests: int = Field(ge=0)


class TheoryCapability(IntersectBaseCapabilityImplementation):
    """``predict``: what proposed pulses would do to the observed film, by the twin's physics."""

    intersect_sdk_capability_name = THEORY

    def __init__(self, theory_url: str) -> None:
        super().__init__()
        scheme, _, options = split(theory_url)
        if scheme != "twin":
            raise ValueError(f"theory URL {theory_url!r} must be a twin:// URL (the physics the theory runs)")
        if "init" in options or "field" in options:
            raise ValueError(f"theory URL {theory_url!r}: leave out init= and field=; the observed image sets both")
        self.theory_url = theory_url
        self.requests = 0

    @intersect_status()
    def status(self) -> TheoryStatus:
        """The physics the theory runs and the requests answered."""
        return TheoryStatus(theory_url=self.theory_url, requests=self.requests)

    @intersect_message(strict_request_validation=True)
    def predict(self, request: PredictRequest) -> PredictResponse:
        """Predict each proposed pulse's wall and written area from the observed image."""
        try:
            return predict(self.theory_url, request)
        except (PfmTwinError, ValueError) as exc:
            raise IntersectCapabilityError(f"{type(exc).__name__}: {exc}") from None
        finally:
            self.requests += 1


def predict(theory_url: str, request: PredictRequest) -> PredictResponse:
    """:meth:`TheoryCapability.predict`, in process."""
    from control.nsid import write_scan

    start = time.perf_counter()
    image = request.image
    phase = image.phase.to_numpy()
    lines, points = phase.shape
    observed = ScanSpec(center=image.center, size=image.size, pixels=(points, lines), line_rate=1.0)
    xs, ys = observed.positions()
    # The film's +P is the image's up phase: turn the image so that domains() reads up as +1.
    result = ScanResult(spec=observed, channels={"phase": phase, "amplitude": np.ones_like(phase),
                                                 "height": np.zeros_like(phase)}, x=xs, y=ys,
                        line_times=np.arange(lines, dtype=float))
    if np.mean(domains(result, axis=image.up_phase) * domains(result)) < 0:
        result.channels["phase"] = wrap_phase(phase + 180.0)
    left, bottom = image.center[0] - image.size[0] / 2, image.center[1] - image.size[1] / 2
    window = ScanSpec(center=(image.size[0] / 2, image.size[1] / 2), size=image.size, pixels=(points, lines),
                      line_rate=10.0)
    predictions = []
    with tempfile.TemporaryDirectory(prefix="pfmtwin-theory-") as tmp:
        path = write_scan(Path(tmp) / "observed.h5", result)
        url = with_options(theory_url, init=str(path))
        for pulse in request.pulses:
            t0 = time.perf_counter()
            with connect(url) as film:
                before = film.scan(window)
                # The film is the image: a pulse on its rim (or an ulp beyond) goes on the rim.
                x = min(max(pulse.x - left, 0.0), image.size[0] * (1 - 1e-12))
                y = min(max(pulse.y - bottom, 0.0), image.size[1] * (1 - 1e-12))
                film.apply_pulse(x, y, pulse.amplitude, pulse.width)
                after = film.scan(window)
            was, now = trace_wall(before), trace_wall(after)
            wall_x = now.x + left if now.crossing else np.full(lines, np.nan)
            shift = float(np.mean(now.x - was.x)) if now.crossing and was.crossing else None
            axis = phase_axis(before.phase)  # one axis for both scans: the same film, the same day
            switched = np.count_nonzero(domains(before, axis=axis) != domains(after, axis=axis))
            predictions.append(Prediction(wall_x=Array.of(wall_x), displacement=shift,
                                          written_area=switched * (image.size[0] / points) * (image.size[1] / lines),
                                          seconds=time.perf_counter() - t0))
    return PredictResponse(request_id=request.request_id, predictions=predictions,
                           seconds=time.perf_counter() - start)


class TheoryClient:
    """The ``Theory`` capability of an INTERSECT service, from ``intersect://HOST:PORT/HIERARCHY``."""

    def __init__(self, url: str) -> None:
        from control.intersect.client import IntersectCaller

        self._bus = IntersectCaller(url, THEORY)

    def predict(self, observed: ScanResult, pulses: list[tuple[float, float, float, float]],
                up_phase: float) -> PredictResponse:
        """Predictions for ``pulses`` ((x m, y m, amplitude V, width s) each) on the film of ``observed``."""
        import uuid

        spec = observed.spec
        request = PredictRequest(
            request_id=str(uuid.uuid4()),
            image=ObservedImage(center=spec.center, size=spec.size, phase=Array.of(observed.phase), up_phase=up_phase),
            pulses=[ProposedPulse(x=x, y=y, amplitude=a, width=w) for x, y, a, w in pulses])
        return PredictResponse.model_validate_json(self._bus._call("predict", request, 0.0))

    def close(self) -> None:
        self._bus.close()

    def __enter__(self) -> "TheoryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
