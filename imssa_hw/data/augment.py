"""Acoustic degradations for synthetic clips: noise at a given SNR, reverberation, band-limiting.

Each function takes its randomness from the `np.random.Generator` it is given, so a clip is a
pure function of its seed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

NOISE_KINDS = ("white", "pink", "babble")


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f power spectrum, shaped in the frequency domain; unit variance."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(f), n=n)
    return (x / (x.std() + 1e-12)).astype(np.float32)


def babble_noise(n: int, rng: np.random.Generator, pool: Sequence[np.ndarray],
                 talkers: tuple[int, int] = (3, 6)) -> np.ndarray:
    """Sum of several talkers: random circular excerpts of `pool` utterances; unit variance."""
    out = np.zeros(n, np.float64)
    for _ in range(int(rng.integers(talkers[0], talkers[1] + 1))):
        talk = pool[int(rng.integers(len(pool)))]
        reps = -(-n // len(talk)) + 1
        start = int(rng.integers(len(talk)))
        excerpt = np.tile(talk, reps)[start:start + n]
        out += excerpt / (excerpt.std() + 1e-12) * 10 ** (rng.uniform(-3, 3) / 20)
    return (out / (out.std() + 1e-12)).astype(np.float32)


def make_noise(kind: str, n: int, rng: np.random.Generator,
               pool: Sequence[np.ndarray] | None = None,
               talkers: tuple[int, int] = (3, 6)) -> np.ndarray:
    """Unit-variance noise of one of NOISE_KINDS ("babble" needs a pool of utterances)."""
    if kind == "white":
        return white_noise(n, rng)
    if kind == "pink":
        return pink_noise(n, rng)
    if kind == "babble":
        if not pool:
            raise ValueError("babble noise needs a pool of utterances")
        return babble_noise(n, rng, pool, talkers)
    raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")


def room_impulse_response(sample_rate_hz: int, rt60_s: float, drr_db: float,
                          rng: np.random.Generator) -> np.ndarray:
    """Direct path plus an exponentially decaying noise tail (60 dB down after `rt60_s`);
    the direct-to-reverberant energy ratio is `drr_db`."""
    n = max(2, int(min(rt60_s, 1.0) * sample_rate_hz))
    t = np.arange(n) / sample_rate_hz
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60_s)
    tail[: max(1, int(0.0025 * sample_rate_hz))] = 0.0  # first reflections after 2.5 ms
    tail *= np.sqrt(10 ** (-drr_db / 10) / (np.sum(tail ** 2) + 1e-12))
    tail[0] = 1.0
    return tail


def reverberate(x: np.ndarray, sample_rate_hz: int, rt60_s: float, drr_db: float,
                rng: np.random.Generator) -> np.ndarray:
    """`x` convolved with a synthetic room response, cut to len(x)."""
    from scipy.signal import fftconvolve  # a second to import: only when used

    h = room_impulse_response(sample_rate_hz, rt60_s, drr_db, rng)
    return fftconvolve(x, h)[: len(x)].astype(np.float32)


def band_limit(x: np.ndarray, sample_rate_hz: int, low_hz: float, high_hz: float) -> np.ndarray:
    """4th-order Butterworth band-pass `low_hz`..`high_hz` (a poor microphone or channel)."""
    from scipy.signal import butter, sosfilt

    high_hz = min(high_hz, 0.45 * sample_rate_hz)
    sos = butter(4, [low_hz, high_hz], btype="bandpass", fs=sample_rate_hz, output="sos")
    return sosfilt(sos, x).astype(np.float32)


def add_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float,
              speech_power: float | None = None) -> np.ndarray:
    """speech + noise scaled so that speech_power / noise power = `snr_db`.

    `speech_power` defaults to the mean power of `speech`; pass the power of the active part
    (without leading and trailing silence) to get the SNR of the speech itself.
    """
    p_speech = float(np.mean(speech.astype(np.float64) ** 2)) if speech_power is None else speech_power
    p_noise = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-20
    scale = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    return (speech + scale * noise).astype(np.float32)
