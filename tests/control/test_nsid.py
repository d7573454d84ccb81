"""NSID images: real Asylum scans, hand-made files, twin round trips, and sidpy/SciFiReaders readback."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import sidpy

with warnings.catch_warnings():
    # SciFiReaders 0.12 warns at import (ImportWarning) that igor2 is missing; only its Asylum
    # .ibw reader needs igor2, and these tests read NSID files. pytest makes warnings errors.
    warnings.filterwarnings("ignore", message="You don't have igor2 installed", category=ImportWarning)
    import SciFiReaders

import control
from control import ScanResult, ScanSpec
from control.nsid import NsidError, read_image, read_scan, read_scans, write_scan
from control.recording import Recorder, read_session

from ..conftest import assert_scans_equal

REAL = Path(__file__).parent.parent / "data" / "pfm-real"
#: file -> scan size, m (DTMicroscope's Asylum scans, see tests/data/pfm-real/README.md).
REAL_SIZES = {"PTO_Funakubo0001.h5": 1e-6, "PTO_Funakubo0002.h5": 5e-6, "PTO_Funakubo0003.h5": 1e-6,
              "PTO_Funakubo0004.h5": 3e-6}
TWIN_URL = "twin://?seed=1&grid=64&field=5e-7"
SPEC = ScanSpec(center=(2.5e-7, 2.5e-7), size=(2e-7, 1.5e-7), pixels=(16, 12), line_rate=5.0, retrace=True)


def make_nsid(path: Path, images: dict, *, labels=("x", "y"), shape=(4, 3), scale_units="nm", pitch=2.5,
              metadata=None, mode="w") -> dict:
    """Write an NSID file by hand, as sidpy lays out an Asylum scan: one group per image.

    Args:
        images: dataset name -> (quantity, units); the data are random, of ``shape``.
        labels: DIMENSION_LABELS of every image.
        shape: stored array shape, in ``labels`` order.
        scale_units: units of the dimension scales.
        pitch: scale step, in ``scale_units``.
        metadata: attributes of an ``original_metadata`` group beside each image.
        mode: "w" for a new file, "a" to add images to one.

    Returns:
        dataset name -> stored array, and "x", "y" -> stored scale values.
    """
    rng = np.random.default_rng(0)
    axes = {label: (np.arange(n) * pitch + 10.0 * (label == "y")) for label, n in zip(labels, shape)}
    stored = dict(axes)
    with h5py.File(path, mode) as f:
        for name, (quantity, units) in images.items():
            group = f.create_group(f"Measurement_000/{name}")
            data = stored[name] = rng.normal(size=shape).astype(np.float32)
            dset = group.create_dataset(name, data=data)
            dset.attrs.update(data_type="IMAGE", quantity=quantity, units=units, main_data_name="generic",
                              modality="generic", source="generic", pyNSID_version="0.0.7.2")
            for dim, label in enumerate(labels):
                scale = group.create_dataset(label, data=axes[label])
                scale.attrs.update(name=label, quantity=label, units=scale_units, dimension_type="SPATIAL")
                scale.make_scale(label)
                dset.dims[dim].label = label
                dset.dims[dim].attach_scale(scale)
            if metadata:
                group.create_group("original_metadata").attrs.update(metadata)
    return stored


ASYLUM = {"Channel_0": ("AmplitudeRetrace", "pm"), "Channel_1": ("PhaseRetrace", "rad")}


@pytest.fixture(scope="module")
def twin_scan() -> ScanResult:
    """A small raster scan of the twin, trace and retrace."""
    with control.connect(TWIN_URL) as scope:
        return scope.scan(SPEC)


# -- real scans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "size"), REAL_SIZES.items())
def test_real_asylum_scans_read_in_contract_terms(name, size):
    image = read_image(REAL / name)
    scan = image.result
    assert list(scan.channels) == ["height", "amplitude", "phase", "deflection"]
    assert all(a.shape == (256, 256) for a in scan.channels.values())
    assert image.passes == dict.fromkeys(scan.channels, "retrace")
    assert 38e-12 <= np.median(scan.amplitude) <= 145e-12
    assert 1e-9 < np.median(np.abs(scan.height)) < 1e-6 and np.ptp(scan.phase) > 90  # m and deg
    # The scales run from 0 to the scan size in 255 steps: size = 256 pitches = 256/255 scan sizes.
    assert scan.spec.size == pytest.approx((size * 256 / 255,) * 2, rel=1e-9)
    assert scan.spec.center == pytest.approx((size / 2, size / 2), rel=1e-9)
    assert scan.spec.pixels == (256, 256) and not scan.spec.retrace
    assert scan.x.shape == scan.y.shape == (256, 256)
    assert scan.x[0, -1] == pytest.approx(size) and scan.y[-1, 0] == pytest.approx(size)
    assert scan.spec.line_rate == image.metadata["ScanRate"]
    assert scan.line_times[1] == pytest.approx(1 / image.metadata["ScanRate"])
    assert image.metadata["ImagingMode"] == "PFM Mode" and isinstance(image.metadata["ScanPoints"], int)


def test_real_scan_lines_run_along_axis_1():
    # Line-to-line offsets (gain, feedback) are what makes a PFM image streaky: the medians of
    # the lines (rows once transposed) spread more than the medians of the columns.
    for _, scan in read_scans(REAL):
        line_spread = np.std(np.median(scan.amplitude, axis=1))
        column_spread = np.std(np.median(scan.amplitude, axis=0))
        assert line_spread > 1.2 * column_spread


def test_read_scans_takes_a_folder_in_name_order_or_one_file(tmp_path):
    assert [p.name for p, _ in read_scans(REAL)] == sorted(REAL_SIZES)
    (path, scan), = read_scans(REAL / "PTO_Funakubo0002.h5")
    assert path.name == "PTO_Funakubo0002.h5" and scan.spec.size[0] > 5e-6
    with pytest.raises(NsidError, match=r"folder .* holds no \*\.h5 file"):
        read_scans(tmp_path)


# -- hand-made files: orientation, units, names --------------------------------------------------


def test_dimension_labels_x_y_are_transposed_to_lines_by_points(tmp_path):
    stored = make_nsid(tmp_path / "xy.h5", ASYLUM, labels=("x", "y"), shape=(4, 3))
    scan = read_scan(tmp_path / "xy.h5")
    assert scan.amplitude.shape == (3, 4) and scan.spec.pixels == (4, 3)
    np.testing.assert_array_equal(scan.amplitude, stored["Channel_0"].T * 1e-12)
    np.testing.assert_array_equal(scan.phase, stored["Channel_1"].T * (180 / math.pi))
    np.testing.assert_array_equal(scan.x, np.broadcast_to(stored["x"] * 1e-9, (3, 4)))
    np.testing.assert_array_equal(scan.y, np.broadcast_to(stored["y"][:, None] * 1e-9, (3, 4)))
    assert scan.spec.size == pytest.approx((4 * 2.5e-9, 3 * 2.5e-9))
    assert scan.spec.center == pytest.approx((3.75e-9, 12.5e-9))
    np.testing.assert_array_equal(scan.line_times, [0.0, 1.0, 2.0])  # no ScanRate: 1 Hz


def test_dimension_labels_y_x_are_kept(tmp_path):
    stored = make_nsid(tmp_path / "yx.h5", ASYLUM, labels=("y", "x"), shape=(4, 3), scale_units="m")
    scan = read_scan(tmp_path / "yx.h5")
    assert scan.spec.pixels == (3, 4)
    np.testing.assert_array_equal(scan.amplitude, stored["Channel_0"] * 1e-12)
    np.testing.assert_array_equal(scan.x[0], stored["x"])


def test_trace_and_retrace_get_the_contract_names_and_the_scan_rate_sets_the_timing(tmp_path):
    images = {"a": ("AmplitudeTrace", "m"), "b": ("AmplitudeRetrace", "m"), "c": ("Phase", "deg"),
              "d": ("ZSensorRetrace", "um"), "e": ("HeightRetrace", "nm")}
    stored = make_nsid(tmp_path / "tr.h5", images, metadata={"ScanRate": 2.0, "Operator": "ada"})
    image = read_image(tmp_path / "tr.h5")
    assert list(image.result.channels) == ["height", "amplitude", "phase", "zsensor", "amplitude_retrace"]
    assert image.passes == {"height": "retrace", "amplitude": "trace", "phase": "trace", "zsensor": "retrace",
                            "amplitude_retrace": "retrace"}
    np.testing.assert_array_equal(image.result.channels["amplitude_retrace"], stored["b"].T)
    np.testing.assert_array_equal(image.result.channels["zsensor"], stored["d"].T * 1e-6)
    assert image.metadata == {"ScanRate": 2.0, "Operator": "ada"}
    # Both passes: the contract's line_rate counts trace lines, a trace + retrace line takes 0.5 s.
    assert image.result.spec.retrace and image.result.spec.line_rate == 4.0
    assert image.result.spec.duration == 3 * 0.5
    np.testing.assert_array_equal(image.result.line_times, [0.0, 0.5, 1.0])


# -- round trips ----------------------------------------------------------------------------------


def test_a_twin_scan_round_trips_through_write_scan_bit_for_bit(tmp_path, twin_scan):
    path = write_scan(tmp_path / "scan.h5", twin_scan, metadata={"sample": "A7", "bath_K": 298.15})
    image = read_image(path)
    assert_scans_equal(image.result, twin_scan)
    assert image.passes == {name: "retrace" if name.endswith("_retrace") else "trace" for name in twin_scan.channels}
    assert list(image.passes) == ["height", "amplitude", "phase", "height_retrace", "amplitude_retrace",
                                  "phase_retrace"]
    assert image.metadata == {"sample": "A7", "bath_K": 298.15}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.h5"]  # no temporary file left


def test_write_scan_follows_nsid_and_gives_the_same_bytes_for_the_same_scan(tmp_path, twin_scan):
    first = write_scan(tmp_path / "a.h5", twin_scan, metadata={"sample": "A7"})
    second = write_scan(tmp_path / "b.h5", twin_scan, metadata={"sample": "A7"})
    assert first.read_bytes() == second.read_bytes()
    with h5py.File(first, "r") as f:
        for name, units in (("height", "m"), ("amplitude_retrace", "m"), ("phase", "deg")):
            dset = f["scan"][name]
            assert dset.attrs["units"] == units and dset.attrs["data_type"] == "IMAGE"
            assert list(dset.attrs["DIMENSION_LABELS"]) == ["y", "x"]
            for attr in ("quantity", "pyNSID_version", "main_data_name", "modality", "source"):
                assert isinstance(dset.attrs[attr], str) and dset.attrs[attr]
            assert dset.dims[0][0] == f["scan/y"] and dset.dims[1][0] == f["scan/x"]
        assert f["scan/x"].attrs["units"] == "m" and f["scan/y"].attrs["units"] == "m"


def test_a_recorded_raster_scan_reads_as_an_nsid_image(tmp_path, twin_scan):
    with Recorder(control.connect(TWIN_URL), tmp_path / "session.h5") as scope:
        sent = scope.scan(replace(SPEC, retrace=False))
    assert_scans_equal(read_scan(tmp_path / "session.h5"), sent)


def test_write_scan_refuses_what_it_cannot_write_and_never_overwrites_silently(tmp_path, twin_scan):
    path = tmp_path / "taken.h5"
    path.write_bytes(b"precious")
    with pytest.raises(control.RecordingError, match=r"taken\.h5.*already exists; .*overwrite=True"):
        write_scan(path, twin_scan)
    assert path.read_bytes() == b"precious"
    write_scan(path, twin_scan, overwrite=True)
    assert_scans_equal(read_scan(path), twin_scan)
    spiral = replace(twin_scan, spec=replace(twin_scan.spec, path="spiral"))
    with pytest.raises(NsidError, match=r"spiral\.h5.*raster scan on an exact x, y grid.*Recorder"):
        write_scan(tmp_path / "spiral.h5", spiral)
    with pytest.raises(control.InvalidArgumentError, match=r"metadata\['when'\]=None is a NoneType"):
        write_scan(tmp_path / "m.h5", twin_scan, metadata={"when": None})
    with pytest.raises(control.InvalidArgumentError, match=r"result='scan' is a str; pass a ScanResult"):
        write_scan(tmp_path / "m.h5", "scan")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.h5"]


# -- refusals -------------------------------------------------------------------------------------


def _two_scan_session(path: Path) -> None:
    with Recorder(control.connect(TWIN_URL), path) as scope:
        scope.scan(replace(SPEC, retrace=False))
        scope.scan(replace(SPEC, retrace=False))


BAD_FILES = {
    "missing": (lambda p: None, r"no file at '.*bad\.h5'; check the path"),
    "not hdf5": (lambda p: p.write_text("a text file"), r"'.*bad\.h5' is not an HDF5 file"),
    "no image": (lambda p: h5py.File(p, "w").close(), r"'.*bad\.h5' holds no NSID image; a valid file holds"),
    "no phase": (lambda p: make_nsid(p, {"a": ("Amplitude", "m"), "h": ("Height", "m")}),
                 r"'.*bad\.h5' has no phase image \(found \['amplitude', 'height'\]\); a valid file"),
    "unknown units": (lambda p: make_nsid(p, {"a": ("Amplitude", "furlong"), "p": ("Phase", "deg")}),
                      r"image '/Measurement_000/a/a' \(amplitude\) is in units 'furlong'; accepted: \["),
    "phase in m": (lambda p: make_nsid(p, {"a": ("Amplitude", "m"), "p": ("Phase", "m")}),
                   r"\(phase\) is in units 'm'; accepted: \['deg'"),
    "decreasing scales": (lambda p: make_nsid(p, ASYLUM, pitch=-2.5),
                          r"the x scale is not uniform and increasing over at least 2 pixels"),
    "bad labels": (lambda p: make_nsid(p, ASYLUM, labels=("u", "v")), r"has DIMENSION_LABELS \['u', 'v'\]"),
    "scales not a length": (lambda p: make_nsid(p, ASYLUM, scale_units="deg"),
                            r"no image has its x scale in a length unit"),
    "same channel twice": (lambda p: make_nsid(p, {**ASYLUM, "Channel_2": ("AmplitudeRetrace", "m")}),
                           r"two retrace 'amplitude' images, '/Measurement_000/Channel_0/Channel_0' and"),
    "a session of two scans": (_two_scan_session, r"two trace 'amplitude' images.*read_session"),
}


@pytest.mark.parametrize(("make", "match"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_unreadable_files_are_refused_naming_the_file_and_what_is_wrong(tmp_path, make, match):
    make(tmp_path / "bad.h5")
    with pytest.raises(NsidError, match=match) as err:
        read_scan(tmp_path / "bad.h5")
    assert isinstance(err.value, control.PfmTwinError) and isinstance(err.value, ValueError)


def test_images_of_different_shapes_or_grids_are_refused(tmp_path):
    make_nsid(tmp_path / "shapes.h5", {"a": ("Amplitude", "m")}, shape=(4, 3))
    make_nsid(tmp_path / "shapes.h5", {"p": ("Phase", "deg")}, shape=(4, 2), mode="a")
    with pytest.raises(NsidError, match=r"shapes\.h5' holds images of different shapes \[\(2, 4\), \(3, 4\)\]"):
        read_scan(tmp_path / "shapes.h5")
    make_nsid(tmp_path / "grids.h5", {"a": ("Amplitude", "m")})
    make_nsid(tmp_path / "grids.h5", {"p": ("Phase", "deg")}, pitch=3.0, mode="a")
    with pytest.raises(NsidError, match=r"grids\.h5', image '/Measurement_000/p/p': its x scale \('nm'\) differs"):
        read_scan(tmp_path / "grids.h5")


# -- sidpy and SciFiReaders read our files --------------------------------------------------------


def read_with_scifireaders(path: Path) -> dict[str, sidpy.Dataset]:
    """Every NSID dataset of ``path`` as SciFiReaders returns it, by title."""
    reader = SciFiReaders.NSIDReader(str(path))
    try:
        return {ds.title: ds for ds in reader.read().values()}
    finally:
        reader.close()  # the reader keeps the file open (read-write) until closed


def assert_sidpy_matches(datasets: dict[str, sidpy.Dataset], scan: ScanResult) -> None:
    assert sorted(datasets) == sorted(scan.channels)
    for name, ds in datasets.items():
        assert isinstance(ds, sidpy.Dataset)
        np.testing.assert_array_equal(np.asarray(ds), scan.channels[name])
        assert ds.units == ("deg" if name.startswith("phase") else "m")
        assert ds.data_type == sidpy.DataType.IMAGE and ds.modality == "PFM"
        y, x = (ds.get_dimension_by_number(i)[0] for i in (0, 1))
        assert (y.name, x.name) == ("y", "x") and y.units == x.units == "m"
        assert y.dimension_type == x.dimension_type == sidpy.DimensionType.SPATIAL
        np.testing.assert_array_equal(x.values, scan.x[0])
        np.testing.assert_array_equal(y.values, scan.y[:, 0])


def test_scifireaders_reads_a_write_scan_file(tmp_path, twin_scan):
    path = write_scan(tmp_path / "scan.h5", twin_scan, metadata={"sample": "A7"})
    datasets = read_with_scifireaders(path)
    assert_sidpy_matches(datasets, twin_scan)
    assert datasets["amplitude"].metadata["sample"] == "A7"
    assert datasets["amplitude"].quantity == "piezoresponse amplitude"


def test_scifireaders_reads_a_recorded_session(tmp_path):
    path = tmp_path / "session.h5"
    with Recorder(control.connect(TWIN_URL), path, metadata={"sample": "A7"}) as scope:
        scope.scan(replace(SPEC, retrace=False))
    (recorded,) = read_session(path).scans()
    assert_sidpy_matches(read_with_scifireaders(path), recorded)
