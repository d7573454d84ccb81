"""What a scan through the contract shows of the film: resolution, written domains, days.

Targets (docs/physics.md, "Tip field and imaging footprint"): vertical PFM with 20-30 nm tips on
a thin film over its bottom electrode images written domains of a few tens of nm with full
phase contrast; domains of 25 nm radius or more image with their radius within 10 nm; the wall's
amplitude dip is 20-50 nm wide for a 25 nm tip and grows with the tip radius (Kalinin et al.
2006; Tian et al. 2008). Every image here is taken through ``control.Guarded``, the door users
use; the film is read from the same twin to know what it holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import control
from control.analysis import domains, phase_axis
from control.nsid import read_scan
from twin.backend import open_twin

CENTER = (0.5e-6, 0.5e-6)
#: A 1 um film on a 128 grid (7.8 nm pixels), all up and uniform; an ideal instrument (no noise,
#: no drift, closed-loop scanner) and a 25 nm tip, so what is measured is the footprint alone.
IDEAL = "twin://?seed=11&init=up&grid=128&field=1e-6&noise=0&texture=0&drift=0&scanner=closed&tip_radius=2.5e-8"
WINDOW = control.ScanSpec(center=CENTER, size=(0.4e-6, 0.4e-6), pixels=(128, 128))


def open_pair(url: str):
    twin = open_twin(url)
    return twin, control.Guarded(twin)


def film_radius(twin) -> float:
    """Equivalent radius (m) of the film's down domains."""
    return float(np.sqrt((twin.film.u < 0).sum() * twin.film.params.spacing**2 / np.pi))


def piezoresponse(scan: control.ScanResult, axis: float | None = None) -> np.ndarray:
    """A cos(phase - axis), axis default :func:`phase_axis`: one sign per polarization state."""
    axis = phase_axis(scan.phase) if axis is None else axis
    return scan.amplitude * np.cos(np.deg2rad(scan.phase - axis))


def down_scan() -> control.ScanResult:
    """A large down domain, as the ideal instrument sees it."""
    twin, scope = open_pair(IDEAL.replace("init=up", "init=down"))
    with scope:
        return scope.scan(WINDOW)


def imaged_radius(scan: control.ScanResult) -> float:
    """Equivalent radius (m) of the half-contrast contour around the center.

    Half contrast: midway between the piezoresponse of the film around the domain (up) and that
    of a large down domain. The electrostatic background shifts both levels alike, so the
    midpoint, not zero, is where the image is half way from one state to the other.
    """
    axis = float(np.median(scan.phase))  # the up film around the domain
    pr = piezoresponse(scan, axis)
    level = (np.median(pr) + np.median(piezoresponse(down_scan(), axis))) / 2
    labels, _ = ndimage.label(pr < level)
    center = labels[labels.shape[0] // 2, labels.shape[1] // 2]
    if center == 0:
        return 0.0
    pitch = scan.spec.size[0] / scan.spec.pixels[0]
    return float(np.sqrt((labels == center).sum() * pitch**2 / np.pi))


def written(width: float, bias: float = 7.74) -> tuple[float, float, control.ScanResult]:
    twin, scope = open_pair(IDEAL)
    with scope:
        scope.apply_pulse(*CENTER, amplitude=bias, width=width)
        scan = scope.scan(WINDOW)
    return film_radius(twin), imaged_radius(scan), scan


def test_the_reference_pulse_is_seen_with_the_radius_the_film_holds():
    film, imaged, scan = written(2.5e-4)
    assert film == pytest.approx(40e-9, abs=8e-9)  # the writing target, docs/physics.md
    assert imaged == pytest.approx(film, abs=10e-9)
    # Full phase contrast at its center: the phase of the down state, not a bump.
    down = float(np.median(down_scan().phase))
    assert scan.phase[64, 64] == pytest.approx(down, abs=15.0)
    assert abs(np.median(scan.phase) - down) > 140.0


@pytest.mark.parametrize("width", [1e-4, 1e-2, 1.0])
def test_domains_of_25_nm_or_more_image_within_10_nm(width):
    film, imaged, _ = written(width)
    assert film >= 25e-9
    assert imaged == pytest.approx(film, abs=10e-9)


def test_imaged_radius_grows_logarithmically_with_pulse_width():
    widths = np.logspace(-4, 0, 5)
    radii = np.array([written(w)[1] for w in widths])
    slope, intercept = np.polyfit(np.log10(widths), radii, 1)
    assert np.all(np.diff(radii) > 0), radii
    assert 8e-9 <= slope <= 16e-9, f"{slope * 1e9:.1f} nm per decade; radii {radii * 1e9}"
    assert np.max(np.abs(radii - (slope * np.log10(widths) + intercept))) < 5e-9, radii


def dip_width(radius: float) -> float:
    """FWHM (m) of the amplitude dip at a straight wall imaged with a tip of ``radius``."""
    url = f"twin://?seed=4&grid=256&field=1e-6&init=wall&disorder=0&noise=0&texture=0&drift=0&scanner=closed&tip_radius={radius}"
    twin, scope = open_pair(url)
    with scope:
        # The wall meanders: align each line on its own wall crossing before averaging.
        scan = scope.scan(control.ScanSpec(center=(0.5e-6, 0.5e-6), size=(0.3e-6, 0.3e-6), pixels=(300, 30)))
    pitch = 0.3e-6 / 300
    pr = piezoresponse(scan)
    profiles = []
    for line, a in zip(pr, scan.amplitude):
        crossing = int(np.argmin(np.abs(line[20:-20]))) + 20
        if 60 <= crossing <= 240:
            profiles.append(a[crossing - 60:crossing + 60])
    profile = np.mean(profiles, axis=0)
    plateau, bottom = np.median(np.r_[profile[:15], profile[-15:]]), profile.min()
    below = profile < (plateau + bottom) / 2
    return float(below.sum() * pitch)


def test_the_wall_dip_is_20_to_50_nm_for_a_25_nm_tip_and_grows_with_the_tip():
    widths = [dip_width(r) for r in (10e-9, 25e-9, 60e-9)]
    assert widths[0] < widths[1] < widths[2], widths
    assert 20e-9 <= widths[1] <= 50e-9, widths


def test_same_seed_another_day_same_domains_different_image():
    spec = control.ScanSpec(center=(1e-6, 1e-6), size=(1e-6, 1e-6), pixels=(128, 128))
    scans = {}
    for day in (0, 0, 1):
        twin, scope = open_pair(f"twin://?seed=3&day={day}&grid=128")
        with scope:
            scans.setdefault(day, []).append((twin.film.u.copy(), scope.scan(spec), scope.info()))
    (u0, a, info0), (u0b, b, _) = scans[0]
    (u1, c, info1) = scans[1][0]
    assert np.array_equal(a.amplitude, b.amplitude) and np.array_equal(a.phase, b.phase)  # same bytes
    assert np.array_equal(u0, u1)  # the sample does not change with the day
    assert info0.options["tip_radius"] != info1.options["tip_radius"]
    assert not np.allclose(a.amplitude, c.amplitude, rtol=0.05, atol=0.0)
    # The same domains: the phase states agree on most pixels.
    d = [np.cos(np.deg2rad(s.phase - phase_axis(s.phase))) > 0 for s in (a, c)]
    assert np.mean(d[0] == d[1]) > 0.85


REAL = Path(__file__).resolve().parents[1] / "data" / "pfm-real" / "PTO_Funakubo0003.h5"


def test_a_twin_of_a_real_sample_images_its_domains():
    """init=PATH: the film takes the domains of a real NSID phase image, at the image's scale."""
    real = read_scan(REAL)
    twin, scope = open_pair(f"twin://?seed=2&init={REAL}&noise=0&texture=0&scanner=closed&drift=0")
    with scope:
        assert scope.info().options["field"] == pytest.approx(real.spec.size[0])
        (w, h), (px, lines) = real.spec.size, real.spec.pixels
        scan = scope.scan(control.ScanSpec(center=(w / 2, h / 2), size=(w, h), pixels=(px, lines)))
    wanted, seen = domains(real), domains(scan)
    # The film holds the real domains above the critical size: sample the real map at the film's
    # pixel centres and keep the domains of more than 40 nm equivalent radius.
    spacing = twin.film.params.spacing
    rows = np.floor((np.arange(twin.film.params.grid) + 0.5) * spacing / (w / px)).astype(int) % px
    real_on_film = wanted[np.ix_(rows, rows)] < 0
    labels, count = ndimage.label(real_on_film)
    areas = ndimage.sum_labels(real_on_film, labels, np.arange(1, count + 1)) * spacing**2
    large = np.isin(labels, 1 + np.flatnonzero(areas > np.pi * (40e-9) ** 2))
    assert large.sum() > 100 and np.mean(twin.film.u[large] < 0) > 0.85
    # ... and the twin's image shows them where the real image does (imaging shrinks small
    # domains a little, Section 7 of docs/physics.md).
    assert np.mean(wanted == seen) > 0.95
    assert np.mean(seen[wanted > 0] < 0) < 0.01
    assert np.mean(seen < 0) == pytest.approx(np.mean(wanted < 0), abs=0.03)


@pytest.mark.parametrize(("scanner", "separation"), [("open", (10e-9, 60e-9)), ("closed", (0.0, 4e-9))])
def test_open_loop_trace_and_retrace_differ_and_closed_loop_they_agree(scanner, separation):
    """Hysteresis: the retrace of an open-loop line lags the trace by a few % of the ramp.

    In closed loop only the lock-in's output filter (0.8 pixel, each pass delayed its own way)
    separates the two: under 4 nm at 2 nm pixels.
    """
    url = f"twin://?seed=4&grid=128&field=1e-6&init=wall&disorder=0&noise=0&texture=0&drift=0&scanner={scanner}"
    twin, scope = open_pair(url)
    with scope:
        scan = scope.scan(control.ScanSpec(center=(0.5e-6, 0.5e-6), size=(1e-6, 1e-6), pixels=(512, 64), retrace=True))
    pitch = 1e-6 / 512

    def wall_x(phase: np.ndarray) -> np.ndarray:
        """Sub-pixel x of the first phase step on each line, m."""
        pr = np.cos(np.deg2rad(phase - np.median(phase[:, :40])))
        return np.array([np.interp(0.0, -line[180:330], np.arange(180, 330)) for line in pr]) * pitch

    shift = np.abs(np.median(wall_x(scan.phase) - wall_x(scan.channels["phase_retrace"])))
    assert separation[0] <= shift <= separation[1], f"trace - retrace at the wall: {shift * 1e9:.1f} nm"


def _numpy_acquire(pfm, x, y, rng, reverse=False, speed=None):
    """PfmSignal.acquire as numpy and scipy expressions (what the compiled chain replaced)."""
    from scipy.ndimage import map_coordinates
    from scipy.signal import lfilter

    from control.contract import wrap_phase

    p, dx = pfm.params, pfm.film.params.spacing

    def sample(grid):
        coords = [np.asarray(y) / dx - 0.5, np.asarray(x) / dx - 0.5]
        if np.iscomplexobj(grid):
            return (map_coordinates(grid.real, coords, order=1, mode="grid-wrap")
                    + 1j * map_coordinates(grid.imag, coords, order=1, mode="grid-wrap"))
        return map_coordinates(grid, coords, order=1, mode="grid-wrap")

    lines, unit = x.shape[0], p.d33 * p.drive
    scale = ((p.reference_speed if speed is None else speed) / p.reference_speed) ** p.line_speed_exponent
    modes = np.arange(1, p.gain_drift_modes + 1)[:, None]
    phases = rng.uniform(0.0, 2 * np.pi, (p.gain_drift_modes, 1))
    curve = (np.sin(2 * np.pi * modes * (np.arange(lines) + 0.5) / lines + phases) / modes).sum(axis=0)
    drift = p.gain_drift * (curve - curve.mean()) / max(curve.std(), 1e-12)
    gain = p.gain * np.exp(scale * p.line_gain * rng.standard_normal(lines) + drift)[:, None]
    offset = scale * p.line_offset * unit * (rng.standard_normal(lines) + 1j * rng.standard_normal(lines))[:, None]
    noise = p.noise * unit * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))
    signal = gain * (sample(pfm.response()) + offset) + p.gain * noise
    pole = np.exp(-1.0 / p.lockin_tau)
    ordered = signal[:, ::-1] if reverse else signal
    filtered = lfilter([1 - pole], [1, -pole], ordered, axis=1, zi=pole * ordered[:, :1])[0]
    signal = filtered[:, ::-1] if reverse else filtered
    height = (sample(pfm.topography) + p.height_line_offset * rng.standard_normal(lines)[:, None]
              + p.height_noise * rng.standard_normal(x.shape))
    return {"height": height, "amplitude": np.abs(signal),
            "phase": wrap_phase(np.rad2deg(np.angle(signal)) + p.phase_offset)}


@pytest.mark.parametrize("reverse, speed", [(False, None), (True, 3e-6)])
def test_the_compiled_signal_chain_is_the_numpy_one(reverse, speed):
    """PfmSignal.acquire (one compiled pass after the noise draws) gives the numpy chain's images to round-off."""
    twin = open_twin("twin://?seed=5&day=2&grid=96")
    pfm = twin.pfm
    assert pfm.params.lockin_tau > 0 and pfm.params.noise > 0 and pfm.params.gain_drift > 0
    rng = np.random.default_rng(0)
    x = rng.uniform(0, twin.film.params.size, (24, 40))  # anywhere, wrapping included
    y = rng.uniform(0, twin.film.params.size, (24, 40))
    ours = pfm.acquire(x, y, np.random.default_rng(9), reverse=reverse, speed=speed)
    reference = _numpy_acquire(pfm, x, y, np.random.default_rng(9), reverse=reverse, speed=speed)
    for name in ("height", "amplitude"):
        np.testing.assert_allclose(ours[name], reference[name], rtol=1e-11, atol=0, err_msg=name)
    turn = np.abs(ours["phase"] - reference["phase"])
    assert np.all(np.minimum(turn, 360 - turn) < 1e-8), float(turn.max())
    assert np.all((ours["phase"] >= -90) & (ours["phase"] < 270))
    other = pfm.acquire(x, y, np.random.default_rng(10), reverse=reverse, speed=speed)
    assert not np.allclose(other["amplitude"], ours["amplitude"], rtol=1e-3, atol=0), "the noise is drawn"
