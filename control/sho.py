"""Band-excitation analysis: a vectorized simple-harmonic-oscillator fit, and hysteresis loops.

The SHO is the cantilever in contact driven near its contact resonance, in the convention of
pycroscopy/BGlib (``SHOfunc``), so fitted parameters mean what their users expect:

    R(f) = A exp(i phi) f0^2 / (f^2 - i f f0 / Q - f0^2)

A is the quasi-static response amplitude (|R| at f -> 0; |R| = A Q at f = f0), phi its phase
(rad; an up domain and a down domain differ by pi), f0 the resonance (Hz), Q the quality factor.

:func:`fit_sho` fits every spectrum of an array at once: an algebraic first guess (the SHO is
a rational function, so R (f^2 - i f b - a) = d is linear in a = f0^2, b = f0 / Q and the complex
d = A exp(i phi) f0^2), exact on noiseless data, then Levenberg-Marquardt steps on the true
residual, all pixels together. It reports standard errors from the residual and the Jacobian, and
R^2. :func:`loop_metrics` reads coercive biases, imprint, remanence, saturation and loop area from
BEPS loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from control.errors import InvalidArgumentError

__all__ = ["SHOFit", "sho", "fit_sho", "LoopMetrics", "loop_metrics", "projected_loops"]


def sho(frequencies, amplitude, frequency, quality, phase) -> np.ndarray:
    """The SHO response at ``frequencies`` (Hz) for parameters that broadcast against them (phase in rad)."""
    f = np.asarray(frequencies, dtype=float)
    f0 = np.asarray(frequency, dtype=float)[..., None]
    q = np.asarray(quality, dtype=float)[..., None]
    c = (np.asarray(amplitude, dtype=float) * np.exp(1j * np.asarray(phase, dtype=float)))[..., None]
    return c * f0**2 / (f**2 - 1j * f * f0 / q - f0**2)


@dataclass
class SHOFit:
    """SHO parameters per spectrum (arrays of the input's leading shape).

    Attributes:
        amplitude: A, in the response's unit (m for the twin).
        frequency: f0, Hz.
        quality: Q.
        phase: phi, rad in (-pi, pi].
        r2: coefficient of determination of the fit of the complex spectrum.
        amplitude_error, frequency_error, quality_error, phase_error: standard errors (one
            sigma) from the residual and the Jacobian at the solution.
        iterations: Levenberg-Marquardt iterations taken (the most over all spectra).
    """

    amplitude: np.ndarray
    frequency: np.ndarray
    quality: np.ndarray
    phase: np.ndarray
    r2: np.ndarray
    amplitude_error: np.ndarray
    frequency_error: np.ndarray
    quality_error: np.ndarray
    phase_error: np.ndarray
    iterations: int

    def response(self, frequencies) -> np.ndarray:
        """The fitted model at ``frequencies``."""
        return sho(frequencies, self.amplitude, self.frequency, self.quality, self.phase)


def _model_and_jacobian(f, p):
    """Model (n, bins) complex and its Jacobian (n, bins, 4) for p = (c_re, c_im, f0, Q) (scaled units)."""
    cr, ci, f0, q = (p[:, k, None] for k in range(4))
    c = cr + 1j * ci
    d = f**2 - 1j * f * f0 / q - f0**2
    g = f0**2 / d
    dg_df0 = (2 * f0 * d - f0**2 * (-1j * f / q - 2 * f0)) / d**2
    dg_dq = -(f0**2) * (1j * f * f0 / q**2) / d**2
    jac = np.stack([g, 1j * g, c * dg_df0, c * dg_dq], axis=-1)
    return c * g, jac


def _real(z: np.ndarray) -> np.ndarray:
    """Stack real and imaginary parts along the bins axis (axis 1)."""
    return np.concatenate([z.real, z.imag], axis=1)


def fit_sho(frequencies, response, *, iterations: int = 30) -> SHOFit:
    """Fit the SHO to every spectrum of ``response`` (shape (..., bins), complex) at once.

    Args:
        frequencies: the bins' frequencies, Hz, shape (bins,), at least 4.
        response: complex spectra, shape (..., bins).
        iterations: most Levenberg-Marquardt iterations after the algebraic guess.

    Returns:
        :class:`SHOFit` with arrays of shape ``response.shape[:-1]``. Spectra that are all zero
        or not finite give NaN parameters and R^2.

    Raises:
        InvalidArgumentError: shapes that do not match, fewer than 4 bins, a real response.
    """
    f = np.asarray(frequencies, dtype=float)
    r = np.asarray(response)
    if f.ndim != 1 or f.size < 4:
        raise InvalidArgumentError(f"frequencies has shape {f.shape}; pass at least 4 bin frequencies, shape (bins,)")
    if r.shape[-1:] != f.shape:
        raise InvalidArgumentError(f"response has shape {r.shape}; its last axis must be the {f.size} bins")
    if not np.iscomplexobj(r):
        raise InvalidArgumentError("response is real; pass the complex spectrum (amplitude and phase per bin)")
    lead = r.shape[:-1]
    r = r.reshape(-1, f.size).astype(np.complex128)
    # Scaled units: frequencies by the band's center, responses by each spectrum's largest bin.
    fc = float(np.mean(f))
    x = f / fc
    scale = np.max(np.abs(r), axis=1)
    good = np.isfinite(scale) & (scale > 0) & np.all(np.isfinite(r), axis=1)
    scale = np.where(good, scale, 1.0)
    y = np.where(good[:, None], r / scale[:, None], 0.0)

    # Algebraic guess: y x^2 = a y + b (i x y) + d, with d complex; least squares per spectrum.
    cols = np.stack([y, 1j * x * y, np.ones_like(y), 1j * np.ones_like(y)], axis=-1)  # (n, bins, 4)
    a_mat = np.concatenate([cols.real, cols.imag], axis=1)
    rhs = _real(y * x**2)
    normal = np.einsum("nbi,nbj->nij", a_mat, a_mat) + 1e-12 * np.eye(4)
    sol = np.linalg.solve(normal, np.einsum("nbi,nb->ni", a_mat, rhs)[..., None])[..., 0]
    a = np.where(sol[:, 0] > 0, sol[:, 0], 1.0)
    f0 = np.sqrt(a)
    q = np.where(sol[:, 1] > 0, f0 / np.where(sol[:, 1] > 0, sol[:, 1], 1.0), 10.0)
    c = (sol[:, 2] + 1j * sol[:, 3]) / a
    p = np.stack([c.real, c.imag, f0, q], axis=1)

    # Levenberg-Marquardt on the true residual, every spectrum with its own damping.
    damping = np.full(len(p), 1e-3)
    model, jac = _model_and_jacobian(x, p)
    cost = np.sum(np.abs(y - model) ** 2, axis=1)
    taken = 0
    for taken in range(1, iterations + 1):
        jr = np.concatenate([jac.real, jac.imag], axis=1)  # (n, 2 bins, 4)
        jtj = np.einsum("nbi,nbj->nij", jr, jr)
        grad = np.einsum("nbi,nb->ni", jr, _real(y - model))
        diag = np.einsum("nii->ni", jtj)
        step = np.linalg.solve(jtj + (damping[:, None] * (diag + 1e-12))[..., None] * np.eye(4),
                               grad[..., None])[..., 0]
        trial = p + step
        # f0 stays within a band's width of the band, Q within [1, 1e5]: beyond them a spectrum
        # without a resonance (noise alone) would wander off to ever larger A (BGlib bounds alike).
        trial[:, 2] = np.clip(trial[:, 2], x[0] - (x[-1] - x[0]), x[-1] + (x[-1] - x[0]))
        trial[:, 3] = np.clip(trial[:, 3], 1.0, 1e5)
        new_model, new_jac = _model_and_jacobian(x, trial)
        new_cost = np.sum(np.abs(y - new_model) ** 2, axis=1)
        better = np.isfinite(new_cost) & (new_cost < cost)
        p = np.where(better[:, None], trial, p)
        model = np.where(better[:, None], new_model, model)
        jac = np.where(better[:, None, None], new_jac, jac)
        relative = np.where(better, (cost - new_cost) / np.maximum(cost, 1e-300), 0.0)
        cost = np.where(better, new_cost, cost)
        damping = np.where(better, damping / 3, damping * 4)
        # Converged: the step no longer moves any parameter by more than 1e-9 of itself, or the
        # accepted one no longer lowers the cost by more than 1e-12 of it.
        tiny = np.max(np.abs(step) / np.maximum(np.abs(p), 1e-12), axis=1) < 1e-9
        if np.all(tiny | (better & (relative < 1e-12)) | (cost < 1e-30)):
            break

    # Standard errors: sigma^2 (J^T J)^-1, sigma^2 from the residual (2 bins - 4 degrees of freedom).
    jr = np.concatenate([jac.real, jac.imag], axis=1)
    dof = max(2 * f.size - 4, 1)
    sigma2 = cost / dof
    cov = np.linalg.pinv(np.einsum("nbi,nbj->nij", jr, jr)) * sigma2[:, None, None]
    var = np.clip(np.einsum("nii->ni", cov), 0.0, None)
    cr, ci, f0, q = p.T
    amp = np.hypot(cr, ci)
    safe = np.where(amp > 0, amp, 1.0)
    # Propagated to A = |c| and phi = arg c; round-off can leave a tiny negative variance.
    amp_var = np.clip((cr**2 * var[:, 0] + ci**2 * var[:, 1] + 2 * cr * ci * cov[:, 0, 1]) / safe**2, 0.0, None)
    phase_var = np.clip((ci**2 * var[:, 0] + cr**2 * var[:, 1] - 2 * cr * ci * cov[:, 0, 1]) / safe**4, 0.0, None)
    total = np.sum(np.abs(y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    r2 = 1.0 - cost / np.where(total > 0, total, 1.0)

    def out(values, unit_scale=1.0):
        values = np.where(good, values * unit_scale, np.nan)
        return values.reshape(lead)

    return SHOFit(
        amplitude=out(amp, scale), frequency=out(f0, fc), quality=out(q), phase=out(np.arctan2(ci, cr)),
        r2=out(r2), amplitude_error=out(np.sqrt(amp_var), scale), frequency_error=out(np.sqrt(var[:, 2]), fc),
        quality_error=out(np.sqrt(var[:, 3])), phase_error=out(np.sqrt(phase_var)), iterations=taken,
    )


# -- hysteresis loops -----------------------------------------------------------------------------


def projected_loops(fit: SHOFit, axis: float | None = None) -> np.ndarray:
    """The piezoresponse A cos(phi - axis) of fitted BEPS spectra (the usual loop quantity).

    ``axis``: the phase of the positive state, rad; default the doubled-angle mean of all the
    phases (the axis of the two phase states, whatever the instrument's offset).
    """
    phase = np.asarray(fit.phase)
    if axis is None:
        finite = phase[np.isfinite(phase)]
        axis = 0.5 * float(np.angle(np.mean(np.exp(2j * finite)))) if finite.size else 0.0
    return np.asarray(fit.amplitude) * np.cos(phase - axis)


@dataclass
class LoopMetrics:
    """What a hysteresis loop per point says (arrays of the points' shape).

    Attributes:
        coercive_positive, coercive_negative: biases (V) at which the loop crosses zero going
            up and going down (NaN where that branch does not cross).
        imprint: (coercive_positive + coercive_negative) / 2, V.
        coercive_width: coercive_positive - coercive_negative, V.
        remanent_positive, remanent_negative: the response at 0 V on the descending branch
            (after the positive bias) and on the ascending one (after the negative bias).
        saturation_positive, saturation_negative: the response at the most positive and the
            most negative bias.
        area: the area the loop encloses in (bias, response), response x V; positive for a
            switching loop (counter-clockwise once oriented), near 0 for a point that does not
            switch.
        switched: the loop crosses zero on both branches with remanences of opposite sign.
    """

    coercive_positive: np.ndarray
    coercive_negative: np.ndarray
    imprint: np.ndarray
    coercive_width: np.ndarray
    remanent_positive: np.ndarray
    remanent_negative: np.ndarray
    saturation_positive: np.ndarray
    saturation_negative: np.ndarray
    area: np.ndarray
    switched: np.ndarray

    def summary(self) -> dict:
        """Medians and spreads over the points (NaN-aware), and the fraction switched."""
        def stats(v):
            v = np.asarray(v, dtype=float).ravel()
            v = v[np.isfinite(v)]
            if v.size == 0:
                return {"median": float("nan"), "iqr": float("nan"), "count": 0}
            lo, med, hi = np.percentile(v, [25, 50, 75])
            return {"median": float(med), "iqr": float(hi - lo), "count": int(v.size)}

        return {"coercive_positive_V": stats(self.coercive_positive), "coercive_negative_V": stats(self.coercive_negative),
                "imprint_V": stats(self.imprint), "coercive_width_V": stats(self.coercive_width),
                "remanent_positive": stats(self.remanent_positive), "remanent_negative": stats(self.remanent_negative),
                "area": stats(self.area), "switched_fraction": float(np.mean(self.switched))}


def _crossing(v: np.ndarray, r: np.ndarray, sign: int) -> np.ndarray:
    """Bias of the first crossing of r through 0 in direction ``sign`` (+1 up, -1 down), per row; NaN if none."""
    a, b = r[:, :-1], r[:, 1:]
    hits = (a * sign < 0) & (b * sign >= 0)
    first = np.argmax(hits, axis=1)
    found = hits[np.arange(len(r)), first]
    ra, rb = a[np.arange(len(r)), first], b[np.arange(len(r)), first]
    va, vb = v[first], v[first + 1]
    frac = np.where(rb != ra, -ra / np.where(rb != ra, rb - ra, 1.0), 0.0)
    return np.where(found, va + frac * (vb - va), np.nan)


def loop_metrics(dc, loops) -> LoopMetrics:
    """Coercive biases, imprint, remanence, saturation and area of BEPS loops.

    Args:
        dc: the DC bias of each step, V, shape (steps,): one cycle that visits both signs
            (e.g. :func:`control.spectroscopy.triangle`).
        loops: the response per step, shape (..., steps), real (e.g. :func:`projected_loops`).
            Its sign convention decides which branch is which: the branch where the bias rises
            is read for ``coercive_positive`` where the response rises through zero, and the
            falling branch for ``coercive_negative``; a loop that runs the other way (a response
            that falls as the bias rises) is read with its sign flipped.
    """
    v = np.asarray(dc, dtype=float)
    r = np.asarray(loops, dtype=float)
    if v.ndim != 1 or r.shape[-1:] != v.shape or v.size < 4:
        raise InvalidArgumentError(f"dc has shape {v.shape} and loops {r.shape}; pass dc (steps,) with steps >= 4 "
                                   "and loops (..., steps)")
    if not (v.max() > 0 > v.min()):
        raise InvalidArgumentError("dc must visit positive and negative biases (one cycle of a BEPS waveform)")
    lead = r.shape[:-1]
    r = r.reshape(-1, v.size)
    dv = np.diff(v)
    # Orientation: the response should grow with the bias on average (flip the others).
    slope = np.sum(np.diff(r, axis=1) * np.sign(dv), axis=1)
    orient = np.where(slope >= 0, 1.0, -1.0)[:, None]
    ro = r * orient
    # Branches in waveform order, starting where the bias turns: descend from the top, ascend from the bottom.
    top, bottom = int(np.argmax(v)), int(np.argmin(v))
    order_down = (top + np.arange(v.size)) % v.size
    down = order_down[: ((bottom - top) % v.size) + 1]
    order_up = (bottom + np.arange(v.size)) % v.size
    up = order_up[: ((top - bottom) % v.size) + 1]
    cp = _crossing(v[up], ro[:, up], +1)
    cn = _crossing(v[down], ro[:, down], -1)

    def at_zero(branch):
        vb, rb = v[branch], ro[:, branch]
        k = np.argmin(np.abs(vb))
        return rb[:, k]

    rem_pos, rem_neg = at_zero(down), at_zero(up)
    # Shoelace over the closed cycle: positive for a loop run counter-clockwise in (bias, response),
    # as a switching loop is once oriented (up along the lower branch, back along the upper one).
    area = 0.5 * np.sum(v * np.roll(ro, -1, axis=1) - np.roll(v, -1) * ro, axis=1)
    switched = np.isfinite(cp) & np.isfinite(cn) & (rem_pos > 0) & (rem_neg < 0)

    def shaped(x):
        return np.asarray(x).reshape(lead)

    return LoopMetrics(
        coercive_positive=shaped(cp), coercive_negative=shaped(cn), imprint=shaped((cp + cn) / 2),
        coercive_width=shaped(cp - cn), remanent_positive=shaped(rem_pos), remanent_negative=shaped(rem_neg),
        saturation_positive=shaped(ro[:, int(np.argmax(v))]), saturation_negative=shaped(ro[:, int(np.argmin(v))]),
        area=shaped(area), switched=shaped(switched),
    )
