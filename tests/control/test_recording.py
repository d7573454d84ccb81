"""Session recording: round trip through a real HDF5 file, metadata, crash safety, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
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


def test_a_record_whose_object_never_reached_the_disk_is_incomplete_not_a_crash(tmp_path):
    """A writer killed mid-record can leave an entry pointing past the file's end (HDF5 "addr
    overflow"; found by ``pfmtwin probe``): reading must report it incomplete, not raise KeyError."""
    path = tmp_path / "s.h5"
    with Recorder(open_twin(), path) as scope:
        workload(scope, 0)
        workload(scope, 1)
    with h5py.File(path, "a") as f:
        f["commands"]["2"] = h5py.SoftLink("/nowhere")  # an entry whose object cannot be opened
    session = read_session(path)
    assert len(session.commands) == 2 and session.incomplete == [2]

CRASH_WRITER = """
import sys
import warnings
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


# -- units and pycroscopy-readable metadata (issue 11) --------------------------------------------


def test_every_recorded_quantity_carries_its_units(recorded):
    session, _ = recorded
    with h5py.File(session.path, "r") as f:
        assert f.attrs["format_version"] == 2
        pulse = f["commands/000003"]
        assert pulse.attrs["verb"] == "apply_pulse"
        assert (pulse.attrs["start_units"], pulse.attrs["end_units"]) == ("s", "s")
        args = pulse["args"]
        assert {k: args.attrs[f"{k}_units"] for k in ("x", "y", "amplitude", "width")} == {
            "x": "m", "y": "m", "amplitude": "V", "width": "s"}
        record = pulse["result"].attrs
        assert {k: record[f"{k}_units"] for k in ("x", "y", "amplitude", "width", "start", "requested_amplitude",
                                                 "requested_width")} == {
            "x": "m", "y": "m", "amplitude": "V", "width": "s", "start": "s", "requested_amplitude": "V",
            "requested_width": "s"}
        assert "cycles_units" not in record  # a count of clock cycles has no unit
        move = f["commands/000002/args"]
        assert (move.attrs["speed"], move.attrs["speed_units"]) == (1e-6, "m/s")
        spec = f["commands/000001/args/spec"].attrs
        assert list(spec["center"]) == list(SPEC.center) and spec["center_units"] == "m"
        assert (spec["line_rate"], spec["line_rate_units"], spec["path"]) == (SPEC.line_rate, "Hz", "raster")
        assert (f["hardware"].attrs["scan_range_units"], f["hardware"].attrs["clock_units"]) == ("m", "Hz")
        assert f["hardware/registers"].attrs["PULSE_TRIGGER"] == control.hardware.REGISTER_MAP["PULSE_TRIGGER"]
        assert (f["limits"].attrs["bias_max"], f["limits"].attrs["bias_max_units"]) == (10.0, "V")
        assert list(f["limits"].attrs["line_rate_range"]) == [0.01, 10.0]
        assert f["limits"].attrs["line_rate_range_units"] == "Hz"
        assert f["options"].attrs["seed"] == 1 and f["options"].attrs["field_units"] == "m"
        info = f["commands/000000/result"]
        assert info.attrs["kind"] == "InstrumentInfo" and info["limits"].attrs["tip_speed_min_units"] == "m/s"
        # No JSON strings left: every number is an HDF5 number a generic tool can read.
        for name in ("hardware", "limits", "options"):
            assert name not in f.attrs
        assert "args" not in pulse.attrs and "json" not in info.attrs


def test_a_move_with_the_default_speed_records_none_as_an_empty_attribute(tmp_path):
    path = tmp_path / "none.h5"
    with Recorder(control.Guarded(FakeBackend()), path) as scope:
        scope.move_tip(1e-6, 2e-6)
    (move,) = read_session(path).commands
    assert move.args == {"x": 1e-6, "y": 2e-6, "speed": None}
    with h5py.File(path, "r") as f:
        assert isinstance(f["commands/000000/args"].attrs["speed"], h5py.Empty)


def test_refused_arguments_of_any_kind_are_recorded(tmp_path):
    path = tmp_path / "odd.h5"
    odd = [(10**400, 1e-6), (np.float32(1e-6), [1, "a"]), (1e-6, True), (np.array(1e-6), 1e-6)]
    with Recorder(control.Guarded(FakeBackend()), path) as scope:
        for x, y in odd:
            with pytest.raises(control.InvalidArgumentError):
                scope.move_tip(x, y)
        with pytest.raises(control.InvalidArgumentError):
            scope.scan({"center": (0, 0), "size": np.array([1e-6, 1e-6])})
    args = [c.args for c in read_session(path).commands]
    assert args[0] == {"x": "(an int of 401 digits)", "y": 1e-6, "speed": None}
    assert args[1] == {"x": float(np.float32(1e-6)), "y": "[1, 'a']", "speed": None}
    assert args[2] == {"x": 1e-6, "y": True, "speed": None}
    assert args[3] == {"x": "array(1.e-06)", "y": 1e-6, "speed": None}
    assert args[4] == {"spec": {"center": [0, 0], "size": [1e-6, 1e-6]}}


def test_sidpy_reads_the_metadata_with_its_units_and_scifireaders_the_scans(recorded):
    import sidpy.hdf.hdf_utils

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You don't have igor2 installed", category=ImportWarning)
        import SciFiReaders

    session, sent = recorded
    with h5py.File(session.path, "r") as f:
        limits = sidpy.hdf.hdf_utils.h5_group_to_dict(f["limits"], {})["limits"]
        hardware = sidpy.hdf.hdf_utils.h5_group_to_dict(f["hardware"], {})["hardware"]
    assert limits["tip_speed_max"] == sent["info"].limits.tip_speed_max and limits["tip_speed_max_units"] == "m/s"
    assert hardware["registers"]["ID"] == 0 and hardware["drive_amplitude_units"] == "V"
    reader = SciFiReaders.NSIDReader(str(session.path))
    try:
        datasets = list(reader.read().values())
    finally:
        reader.close()
    assert sorted(ds.title for ds in datasets) == ["amplitude", "height", "phase"]  # the raster; not the spiral
    for ds in datasets:
        np.testing.assert_array_equal(np.asarray(ds), sent["raster"].channels[ds.title])


def write_version_1(path: Path, info: InstrumentInfo, pulse: PulseRecord) -> None:
    """A session file as pfmtwin wrote it before units (format_version 1): JSON strings, bare numbers."""
    with h5py.File(path, "w") as f:
        f.attrs.update(format="pfmtwin.session", format_version=1, sample="A7", material="PbTiO3", investigator="",
                       project="", instrument=info.identity, software_version="0.9", seed=3, backend=info.backend,
                       backend_url=info.url, protocol_version=info.protocol_version,
                       hardware=json.dumps(info.hardware.to_dict()),
                       limits=json.dumps({k: v for k, v in info.limits.to_dict().items()
                                          if k not in ("tip_speed_min", "duration_max")}),
                       options=json.dumps(info.options), created="2026-11-30T10:00:00+00:00")
        commands = f.create_group("commands")
        first = commands.create_group("000000")
        first.attrs.update(index=0, verb="info", args="{}", start=0.0, end=0.0)
        first.create_group("result").attrs.update(kind="InstrumentInfo", json=json.dumps(info.to_dict()))
        first.attrs["complete"] = True
        second = commands.create_group("000001")
        second.attrs.update(index=1, verb="apply_pulse", start=0.0, end=pulse.end,
                            args=json.dumps({"x": 1e-6, "y": 1e-6, "amplitude": 1.0, "width": 1e-3}))
        result = second.create_group("result")
        result.attrs["kind"] = "PulseRecord"
        result.attrs.update({name: getattr(pulse, name) for name in PulseRecord.__dataclass_fields__})
        second.attrs["complete"] = True


def test_a_version_1_session_still_reads(tmp_path):
    backend = FakeBackend()
    info, pulse = backend.info(), backend.apply_pulse(1e-6, 1e-6, 1.0, 1e-3)
    write_version_1(tmp_path / "v1.h5", info, pulse)
    session = read_session(tmp_path / "v1.h5")
    assert session.metadata["hardware"] == json.loads(json.dumps(info.hardware.to_dict()))
    assert session.metadata["options"] == {"seed": 3} and session.metadata["limits"]["bias_max"] == 10.0
    assert [c.verb for c in session.commands] == ["info", "apply_pulse"]
    assert session.commands[0].result == json.loads(json.dumps(info.to_dict()))
    assert session.commands[1].args == {"x": 1e-6, "y": 1e-6, "amplitude": 1.0, "width": 1e-3}
    assert session.pulses() == [pulse]


def test_a_session_from_a_newer_pfmtwin_is_refused(tmp_path):
    path = tmp_path / "new.h5"
    with Recorder(control.Guarded(FakeBackend()), path):
        pass
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 3
    with pytest.raises(control.RecordingError, match=r"new\.h5' has format_version 3; this pfmtwin reads 1 and 2: "
                       r"upgrade pfmtwin"):
        read_session(path)
