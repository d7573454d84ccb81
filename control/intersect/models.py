"""The messages of the microscope's INTERSECT capability: typed requests, responses and events, SI units.

One request model per contract verb that changes the instrument. Each carries a client-chosen
``request_id``; the service answers a repeated id from its record instead of running the command
again, so a client may resend after a lost answer (the wire protocol's exactly-once rule).

Arrays travel inside the JSON message as base64 of their little-endian bytes (:class:`Array`),
not as JSON number lists: a 256 x 256 x 3 image is 2.1 MB of base64 against about 4 MB of decimal
text, is encoded and decoded at memory speed, and keeps every bit (the same seed gives the same
bytes through the bus as in process). They go in the message itself (``IntersectDataHandler.MESSAGE``)
rather than through a MinIO data plane: such images are far below the broker's message limit, and
the instrument then needs nothing but the broker.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

RequestId = Annotated[str, Field(min_length=1, max_length=64, description="client-chosen id; a repeat is answered, not re-run")]


class Array(BaseModel):
    """An n-d array: little-endian bytes, base64 in JSON."""

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    dtype: Literal["<f8", "<i8", "<c16"] = Field(description="numpy dtype (little-endian float64, int64, complex128)")
    shape: list[Annotated[int, Field(ge=0)]]
    data: bytes = Field(description="the values, little-endian, C order (base64 in JSON)")

    @classmethod
    def of(cls, values: np.ndarray) -> Array:
        a = np.asarray(values)
        dtype = "<i8" if np.issubdtype(a.dtype, np.integer) else "<c16" if np.iscomplexobj(a) else "<f8"
        return cls(dtype=dtype, shape=list(a.shape), data=np.ascontiguousarray(a, dtype=dtype).tobytes())

    def to_numpy(self) -> np.ndarray:
        count = int(np.prod(self.shape)) if self.shape else 1
        size = count * np.dtype(self.dtype).itemsize
        if len(self.data) != size:
            raise ValueError(f"array of shape {self.shape} needs {size} bytes, got {len(self.data)}")
        return np.frombuffer(self.data, dtype=self.dtype).astype(self.dtype[1:]).reshape(self.shape)


class MoveRequest(BaseModel):
    """Move the tip to (x, y) at ``speed`` (None: the fastest the limits allow)."""

    request_id: RequestId
    x: float = Field(description="m")
    y: float = Field(description="m")
    speed: float | None = Field(default=None, description="m/s")


class ScanRequest(BaseModel):
    """Acquire an image (``control.ScanSpec``'s fields); ``stream``: also emit each line as a ``scan_line`` event."""

    request_id: RequestId
    center: tuple[float, float] = Field(description="m")
    size: tuple[float, float] = Field(description="m")
    pixels: tuple[int, int] = Field(description="points per line, lines")
    line_rate: float = Field(description="Hz")
    path: Literal["raster", "spiral"] = "raster"
    retrace: bool = False
    stream: bool = False


class PulseRequest(BaseModel):
    """A bias pulse at (x, y)."""

    request_id: RequestId
    x: float = Field(description="m")
    y: float = Field(description="m")
    amplitude: float = Field(description="V")
    width: float = Field(description="s")


class BandModel(BaseModel):
    """A band-excitation read-out (``control.spectroscopy.Band``)."""

    center: float = Field(description="Hz")
    width: float = Field(description="Hz")
    amplitude: float = Field(description="V")
    duration: float = Field(description="s")
    bins: int


class BERequest(BaseModel):
    """One band-excitation read-out at (x, y)."""

    request_id: RequestId
    x: float = Field(description="m")
    y: float = Field(description="m")
    band: BandModel


class BEResponse(BaseModel):
    """``control.spectroscopy.BEResult``."""

    request_id: RequestId
    x: float = Field(description="m")
    y: float = Field(description="m")
    frequencies: Array = Field(description="bin frequencies, Hz")
    response: Array = Field(description="complex response per bin, m")
    start: float = Field(description="instrument time the read-out began, s")


class BEPSRequest(BaseModel):
    """Switching spectroscopy (``control.spectroscopy.BEPSSpec``)."""

    request_id: RequestId
    points: list[tuple[float, float]] = Field(description="m")
    dc: list[float] = Field(description="DC bias of each step, V")
    step: float = Field(description="s")
    band: BandModel


class BEPSResponse(BaseModel):
    """``control.spectroscopy.BEPSResult``."""

    request_id: RequestId
    frequencies: Array = Field(description="bin frequencies, Hz")
    response: Array = Field(description="complex, m, shape (points, steps, 2 (DC on, off), bins)")
    times: Array = Field(description="instrument time each step began, s, shape (points, steps)")


class Clock(BaseModel):
    """The instrument's clock after a command."""

    now: float = Field(description="instrument time, s")


class ScanResponse(BaseModel):
    """An acquired image (``control.ScanResult``)."""

    request_id: RequestId
    channels: dict[str, Array] = Field(description="height (m), amplitude (m), phase (deg); shape (lines, points)")
    x: Array = Field(description="commanded x of every pixel, m")
    y: Array = Field(description="commanded y of every pixel, m")
    line_times: Array = Field(description="instrument time at the start of each line, s")


class PulseResponse(BaseModel):
    """What the controller emitted (``control.PulseRecord``)."""

    request_id: RequestId
    x: float = Field(description="m")
    y: float = Field(description="m")
    amplitude: float = Field(description="V, after DAC quantization")
    width: float = Field(description="s, whole FPGA cycles")
    start: float = Field(description="instrument time of the rising edge, s")
    cycles: int = Field(description="width in FPGA clock cycles")
    requested_amplitude: float = Field(description="V")
    requested_width: float = Field(description="s")


class LineEvent(BaseModel):
    """One scan line as it arrives (event ``scan_line``), for the scan of ``request_id``."""

    request_id: RequestId
    index: int = Field(ge=0, description="line index")
    start: float = Field(description="instrument time at the start of the line, s")
    channels: dict[str, Array]


Scalar = float | int | str | bool | None
Value = Scalar | list[Scalar] | dict[str, Scalar]


class InfoResponse(BaseModel):
    """``control.InstrumentInfo``: identity, versions, hardware spec (SI), the limits in force, options."""

    backend: str
    url: str = Field(description="the URL the service opened")
    identity: str
    protocol_version: str
    software_version: str
    hardware: dict[str, Value] = Field(description="control.HardwareSpec.to_dict(), SI units")
    limits: dict[str, Value] = Field(description="control.SafetyLimits.to_dict(), SI units")
    options: dict[str, Value] = {}
    option_units: dict[str, str] = {}


class ServiceStatus(BaseModel):
    """What the service is serving (the status message)."""

    backend: str = Field(description="backend kind behind the service, e.g. twin")
    backend_url: str
    now: float = Field(description="instrument time, s")
    commands: int = Field(ge=0, description="commands run (repeats answered from the record not counted)")
    busy: bool
