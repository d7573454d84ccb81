"""The instrument contract of pfmtwin: one API for the twin, the emulator and the real PFM.

>>> import control
>>> with control.connect("twin://?seed=7") as scope:   # doctest: +SKIP
...     img = scope.scan(control.ScanSpec(center=(1e-6, 1e-6), size=(1e-6, 1e-6)))
"""

from control.connect import Guarded, backends, connect, open_backend
from control.contract import (
    CHANNELS,
    PROTOCOL_VERSION,
    Backend,
    InstrumentInfo,
    LineCallback,
    Microscope,
    PulseRecord,
    ScanResult,
    ScanSpec,
    wrap_phase,
)
from control.errors import (
    InstrumentError,
    InvalidArgumentError,
    LimitError,
    PfmTwinError,
    RecordingError,
    TransportError,
    UrlError,
)
from control.hardware import DEFAULT_HARDWARE, REGISTER_MAP, HardwareSpec
from control.limits import SafetyLimits
from control.recording import Command, Recorder, Session, read_session

__version__ = "0.1.0"

__all__ = [
    "wrap_phase",
    "CHANNELS",
    "DEFAULT_HARDWARE",
    "PROTOCOL_VERSION",
    "REGISTER_MAP",
    "Backend",
    "Command",
    "Guarded",
    "HardwareSpec",
    "InstrumentError",
    "InstrumentInfo",
    "LineCallback",
    "InvalidArgumentError",
    "LimitError",
    "Microscope",
    "PfmTwinError",
    "PulseRecord",
    "Recorder",
    "RecordingError",
    "SafetyLimits",
    "ScanResult",
    "ScanSpec",
    "Session",
    "TransportError",
    "UrlError",
    "backends",
    "connect",
    "open_backend",
    "read_session",
]
