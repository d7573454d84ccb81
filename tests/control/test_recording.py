"""Session recording: round trip through a real HDF5 file, metadata, crash safety, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

import control
from control import DEFAULT_HARDWARE, InstrumentInfo, PulseRecord, SafetyLimits, ScanResult, ScanSpec
from control.nsid import read_scan
from control.recording import Recorder, Session, read_session

from ..conftest import assert_scans_equal

HERE = Path(__file__).parent
TWIN_URL = "twin://?seed=1&grid=64"
SPEC = ScanSpec(center=(1e-6, 1e-6), size=(1e-6, 1e-6), pixels=(16, 12), line_rate=10.0)
SPIRAL = replace(SPEC, path="spiral", retrace=True)


class FakeBackend:
    """A backend for what the twin does not do, and for tests that need no physics.

    It returns float32 channels and, with ``jitter`` (m), measured raster positions off the
    commanded grid, as a scanner with position sensors reports them.
    """

    def __init__(self, seed: int = 3, jitter: float = 0.0) -> None:
        self._rng = np.random.default_rng(seed)
        self._t = 0.0
        self._seed = seed
        self._jitter = jitter

    def info(self) -> InstrumentInfo:
        return InstrumentInfo(
            backend="fake",
            url=f"fake://?seed={self._seed}",
            identity="fake PFM for recorder tests",
            protocol_version=control.PROTOCOL_VERSION,
            software_version="0.0",
            hardware=DEFAULT_HARDWARE,
            limits=SafetyLimits.from_hardware(),
            options={"seed": self._seed},
        )

    def move_tip(self, x: float, y: float, speed: float) -> None:
        self._t += 1e-3

    def scan(self, spec: ScanSpec, on_line=None) -> ScanResult:
        x, y = (p + self._jitter * self._rng.normal(size=spec.shape) for p in spec.positions())
        names = ["height", "amplitude", "phase"]
        if spec.retrace:
            names += [f"{n}_retrace" for n in names]
        dtypes = {n: np.float32 if n.startswith("amplitude") else np.float64 for n in names}
        channels = {n: self._rng.normal(size=spec.shape).astype(dtypes[n]) for n in names}
        line_times = self._t + np.arange(spec.shape[0]) / spec.line_rate * (2 if spec.retrace else 1)
        self._t += spec.duration
        return ScanResult(spec=spec, channels=channels, x=x, y=y, line_times=line_times)

    def apply_pulse(self, x: float, y: float, amplitude: float, width: float) -> PulseRecord:
        cycles = round(width * DEFAULT_HARDWARE.clock)
        lsb = DEFAULT_HARDWARE.bias_lsb
        start, self._t = self._t, self._t + cycles / DEFAULT_HARDWARE.clock
        emitted = round(amplitude / lsb) * lsb
        return PulseRecord(x, y, emitted, cycles / DEFAULT_HARDWARE.clock, start, cycles, amplitude, width)

    def now(self) -> float:
        return self._t

    def close(self) -> None:
        pass


def open_twin() -> control.Microscope:
    """A fresh twin; the same seed gives the same film, so a replay reproduces a session."""
    return control.connect(TWIN_URL)


def workload(scope: control.Microscope, i: int) -> None:
    """Command ``i`` of the crash workload: scans, pulses and a rejected pulse in turn."""
    step = i % 4
    if step == 0:
        scope.scan(SPEC)
    elif step == 1:
        scope.apply_pulse(1e-6, 1e-6, 3.0, 1e-3)
    elif step == 2:
        with pytest.raises(control.LimitError):
            scope.apply_pulse(1e-6, 1e-6, 99.0, 1e-3)
    else:
        scope.move_tip(1.5e-6, 0.5e-6)


# -- round trip ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Session, dict]:
    """Record one session (raster and spiral scans, pulses, rejections) and read it back."""
    path = tmp_path_factory.mktemp("session") / "run.h5"
    sent = {}
    metadata = {"sample": "A7", "investigator": "ada", "bath_K": 298.15}
    with Recorder(open_twin(), path, metadata=metadata) as scope:
        sent["info"] = scope.info()
        sent["raster"] = scope.scan(SPEC)
        scope.move_tip(0.5e-6, 0.5e-6, speed=1e-6)
        sent["pulses"] = [scope.apply_pulse(1e-6, 1e-6, a, 1e-3) for a in (2.5, -4.0)]
        with pytest.raises(control.LimitError) as rejected:
            scope.apply_pulse(1e-6, 1e-6, 99.0, 1e-3)
        sent["rejected"] = rejected.value
        with pytest.raises(control.InvalidArgumentError):
            scope.scan("not a spec")
        sent["spiral"] = scope.scan(SPIRAL)
        sent["end"] = scope.now()
    return read_session(path), sent


def test_commands_are_recorded_in_order_with_instrument_time(recorded):
    session, sent = recorded
    verbs = [c.verb for c in session.commands]
    assert verbs == ["info", "scan", "move_tip", "apply_pulse", "apply_pulse", "apply_pulse", "scan", "scan"]
    assert [c.index for c in session.commands] == list(range(len(verbs)))
    starts = [c.start for c in session.commands]
    ends = [c.end for c in session.commands]
    assert all(s <= e for s, e in zip(starts, ends))
    assert starts == sorted(starts) and ends[-1] == sent["end"]
    assert session.commands[1].end - session.commands[1].start >= SPEC.duration * (1 - 1e-9)
    assert session.commands[2].args == {"x": 0.5e-6, "y": 0.5e-6, "speed": 1e-6}
    assert session.commands[1].args == {"spec": SPEC.to_dict()}
    assert session.incomplete == []


def test_scans_round_trip_bit_for_bit(recorded):
    session, sent = recorded
    raster, spiral = session.scans()
    assert_scans_equal(raster, sent["raster"])
    assert_scans_equal(spiral, sent["spiral"])
    assert "phase_retrace" in spiral.channels


def test_pulses_and_info_round_trip(recorded):
    session, sent = recorded
    assert session.pulses() == sent["pulses"]
    assert session.commands[0].result == json.loads(json.dumps(sent["info"].to_dict()))


def test_rejected_commands_are_recorded_with_their_error(recorded):
    session, sent = recorded
    rejected = session.commands[5]
    assert rejected.error == ("LimitError", str(sent["rejected"]))
    assert not rejected.ok and rejected.result is None
    assert rejected.args == {"x": 1e-6, "y": 1e-6, "amplitude": 99.0, "width": 1e-3}
    assert rejected.start == rejected.end  # a rejected command leaves the clock alone
    bad_scan = session.commands[6]
    assert bad_scan.error[0] == "InvalidArgumentError" and bad_scan.args == {"spec": "not a spec"}


def test_metadata_names_the_sample_instrument_and_software(recorded):
    session, sent = recorded
    meta, info = session.metadata, sent["info"]
    assert meta["sample"] == "A7" and meta["investigator"] == "ada" and meta["project"] == ""
    assert meta["material"] == "PbTiO3"
    assert meta["bath_K"] == 298.15
    assert meta["instrument"] == info.identity
    assert meta["software_version"] == control.__version__
    assert meta["seed"] == info.options["seed"]
    assert meta["backend_url"] == info.url and meta["backend"] == "twin"
    assert meta["hardware"] == json.loads(json.dumps(info.hardware.to_dict()))
    assert meta["limits"] == json.loads(json.dumps(info.limits.to_dict()))
    assert meta["created"].endswith("+00:00")


def test_raster_channels_follow_nsid_conventions(recorded):
    session, _ = recorded
    with h5py.File(session.path, "r") as f:
        group = f["commands/000001/result"]
        for name, units in (("height", "m"), ("amplitude", "m"), ("phase", "deg")):
            dset = group[name]
            assert dset.attrs["units"] == units and dset.attrs["data_type"] == "IMAGE"
            for attr in ("quantity", "main_data_name", "modality", "source"):
                assert isinstance(dset.attrs[attr], str)
            assert [d.label for d in dset.dims] == ["y", "x"]
            assert dset.dims[0][0] == group["y"] and dset.dims[1][0] == group["x"]
        for axis in ("x", "y"):
            assert group[axis].ndim == 1 and group[axis].attrs["units"] == "m"
            assert group[axis].attrs["dimension_type"] == "SPATIAL"
        assert group["line_times"].attrs["units"] == "s"
        spiral = f["commands/000007/result"]
        assert spiral["x"].shape == SPIRAL.shape and "data_type" not in spiral["height"].attrs


def test_the_raster_scan_of_a_session_reads_as_nsid_and_the_spiral_is_not_an_image(recorded):
    # One NSID writer for sessions and standalone files: control.nsid reads the session's raster
    # scan bit for bit; the spiral has no 1D scales, so it is not an NSID image and is skipped.
    session, sent = recorded
    assert_scans_equal(read_scan(session.path), sent["raster"])


def test_recorder_is_a_microscope_and_closes_it(tmp_path):
    scope = control.Guarded(FakeBackend())
    recorder = Recorder(scope, tmp_path / "s.h5")
    assert isinstance(recorder, control.Microscope)
    recorder.close()
    recorder.close()
    with pytest.raises(control.InstrumentError, match="closed"):
        scope.now()
    with pytest.raises(control.InstrumentError, match="recorder of .* is closed"):
        recorder.apply_pulse(1e-6, 1e-6, 1.0, 1e-3)
    assert read_session(tmp_path / "s.h5").commands == []


def test_measured_positions_and_any_dtype_round_trip_bit_for_bit(tmp_path):
    path = tmp_path / "jitter.h5"
    with Recorder(control.Guarded(FakeBackend(jitter=1e-10)), path) as scope:
        sent = scope.scan(SPEC)
    assert sent.amplitude.dtype == np.float32
    (got,) = read_session(path).scans()
    assert_scans_equal(got, sent)
    with h5py.File(path, "r") as f:
        # Not a grid, so not an NSID image: the measured positions are stored whole.
        result = f["commands/000000/result"]
        assert result["x"].shape == SPEC.shape and "data_type" not in result["height"].attrs


def test_a_record_cut_short_is_reported_not_returned(tmp_path):
    path = tmp_path / "cut.h5"
    with Recorder(control.Guarded(FakeBackend()), path) as scope:
        scope.apply_pulse(1e-6, 1e-6, 1.0, 1e-3)
    with h5py.File(path, "a") as f:
        f["commands"].create_group("000001").attrs["verb"] = "scan"  # as a writer dying mid-record leaves it
    session = read_session(path)
    assert [c.verb for c in session.commands] == ["apply_pulse"] and session.incomplete == [1]


# -- crash safety -------------------------------------------------------------------------------

CRASH_WRITER = """
import sys
sys.path.insert(0, {root!r})
from tests.control.test_recording import Recorder, open_twin, workload
with Recorder(open_twin(), {path!r}) as scope:
    i = 0
    while True:
        workload(scope, i)
        print(i, flush=True)
        i += 1
"""


def test_kill_9_loses_at_most_the_record_in_flight(tmp_path):
    path = tmp_path / "crash.h5"
    n = 10
    code = CRASH_WRITER.format(root=str(HERE.parents[1]), path=str(path))
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as writer:
        done = [writer.stdout.readline() for _ in range(n)]
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert done[-1].strip() == str(n - 1), "the writer died before the kill"
    session = read_session(path)
    assert len(session.commands) >= n
    assert session.incomplete in ([], [len(session.commands)])
    # Intact: replaying the workload on a fresh microscope reproduces every record bit for bit.
    expected = Recorder(open_twin(), tmp_path / "replay.h5")
    with expected:
        for i in range(len(session.commands)):
            workload(expected, i)
    replay = read_session(tmp_path / "replay.h5")
    for got, want in zip(session.commands, replay.commands, strict=True):
        assert (got.index, got.verb, got.args, got.error) == (want.index, want.verb, want.args, want.error)
        assert (got.start, got.end) == (want.start, want.end)
        if isinstance(want.result, ScanResult):
            assert_scans_equal(got.result, want.result)
        else:
            assert got.result == want.result


# -- refusals -----------------------------------------------------------------------------------


def test_an_existing_file_is_never_overwritten_silently(tmp_path):
    path = tmp_path / "taken.h5"
    path.write_bytes(b"precious")
    fix = r"taken\.h5.*already exists; choose another path or pass overwrite=True"
    with pytest.raises(control.RecordingError, match=fix):
        Recorder(control.Guarded(FakeBackend()), path)
    assert path.read_bytes() == b"precious"
    with Recorder(control.Guarded(FakeBackend()), path, overwrite=True) as scope:
        scope.apply_pulse(1e-6, 1e-6, 1.0, 1e-3)
    assert len(read_session(path).pulses()) == 1


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ({"sample": ["A7"]}, r"metadata\['sample'\]=\['A7'\] is a list; pass a str or a number"),
        ({"dose": None}, r"metadata\['dose'\]=None is a NoneType"),
        ({"annealed": True}, r"metadata\['annealed'\]=True is a bool"),
        ({3: "x"}, r"metadata key 3 must be a non-empty str"),
        ({"seed": 5}, r"metadata key 'seed' is filled in by the recorder.*'user_seed'"),
        ("sample A7", r"metadata='sample A7' is a str; pass a dict"),
    ],
)
def test_bad_metadata_is_refused_before_the_file_is_created(tmp_path, metadata, match):
    with pytest.raises(control.InvalidArgumentError, match=match) as err:
        Recorder(control.Guarded(FakeBackend()), tmp_path / "m.h5", metadata=metadata)
    assert isinstance(err.value, TypeError)
    assert not (tmp_path / "m.h5").exists()


def test_reading_a_missing_or_foreign_file_is_a_recording_error(tmp_path):
    with pytest.raises(control.RecordingError, match=r"no session file at .*nothing\.h5"):
        read_session(tmp_path / "nothing.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(control.RecordingError, match=r"not a pfmtwin session"):
        read_session(tmp_path / "other.h5")
