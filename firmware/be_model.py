"""Bit-exact model of the band-excitation engine (``firmware/rtl/be_engine.v``), and the host's side.

The engine plays one period of a drive table (``length`` DAC codes) ``repeats`` times at the
ADC rate and sums the ADC samples of each period into a capture buffer. The host builds the
table from the band (:func:`excitation`: a multisine of the band's bins, Schroeder phases for a
low crest factor, on the table's harmonics, ADC rate / length apart) and divides the spectrum of
the capture by the table's (:func:`response`). cocotb-free: the testbench and co-simulation use it.
"""

from __future__ import annotations

import numpy as np

from control.hardware import DEFAULT_HARDWARE

#: Clock cycles per ADC sample (the engine's ADC_DIV).
ADC_DIV = round(DEFAULT_HARDWARE.clock / DEFAULT_HARDWARE.adc_rate)


def play(table: np.ndarray, repeats: int, adc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(drive code per ADC sample, capture words) of one play: ``adc`` holds one sample per strobe."""
    table = np.asarray(table, dtype=np.int64)
    length = len(table)
    k = np.arange(length * repeats)
    adc = np.asarray(adc, dtype=np.int64)
    if adc.shape != k.shape:
        raise ValueError(f"adc has {adc.size} samples; a play of {length} x {repeats} takes {k.size}")
    capture = np.zeros(length, dtype=np.int64)
    np.add.at(capture, k % length, adc)
    capture = (capture + 2**31) % 2**32 - 2**31  # the 32-bit words wrap as the RTL's do
    return table[k % length], capture


def sample_edges(start_edge: int, length: int, count: int) -> np.ndarray:
    """The clock edge at which each of ``count`` ADC samples is taken (the RTL's timing)."""
    return start_edge + length + (np.arange(count) + 1) * ADC_DIV


def harmonics(center: float, width: float, bins: int, length: int, adc_rate: float = DEFAULT_HARDWARE.adc_rate
              ) -> np.ndarray:
    """The table harmonics nearest to ``bins`` frequencies spread evenly over the band (distinct)."""
    step = adc_rate / length
    wanted = center - width / 2 + (np.arange(bins) + 0.5) * (width / bins)
    k = np.round(wanted / step).astype(int)
    if len(np.unique(k)) != bins or k.min() < 1 or k.max() >= length // 2:
        raise ValueError(f"a table of {length} samples has harmonics {step:.1f} Hz apart: too coarse for {bins} "
                         f"bins over {width} Hz; use a longer table")
    return k


def excitation(k: np.ndarray, length: int, amplitude_code: int) -> np.ndarray:
    """One period of drive codes: equal sines at harmonics ``k`` with Schroeder phases, peak ``amplitude_code``."""
    n = np.arange(length)
    m = np.arange(len(k))
    phases = -np.pi * m * (m + 1) / len(k)  # Schroeder (1970): a low crest factor
    wave = np.cos(2 * np.pi * np.outer(n, k) / length + phases).sum(axis=1)
    return np.round(wave / np.abs(wave).max() * amplitude_code).astype(np.int64)


def response(capture: np.ndarray, table: np.ndarray, k: np.ndarray, repeats: int) -> np.ndarray:
    """ADC codes per DAC code at harmonics ``k``: the averaged period's spectrum over the drive's."""
    return (np.fft.fft(np.asarray(capture, dtype=float) / repeats)[k]) / np.fft.fft(np.asarray(table, dtype=float))[k]
