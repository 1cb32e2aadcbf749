"""Synthetic spoken digits: eSpeak NG voices, held-out test voices, noise, reverb, band-limiting.

A voice is "accent+variant" (e.g. "en-gb-scotland+m3"). The test split uses only voices the
training split never hears: every voice whose variant or accent is held out. Every clip is a
pure function of (seed, split, label, index), so a subset of classes or a different order of
generation gives the same clips.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np

from imssa_hw.data import augment
from imssa_hw.data.features import resample
from imssa_hw.data.knobs import Knobs
from imssa_hw.data.labels import label_language, label_text
from imssa_hw.data.synth import synthesize
from imssa_hw.errors import BadInput

GENERATOR_VERSION = 1
SAMPLE_RATE_HZ = 16000
SPLITS = {"train": 1, "test": 2}
LANGUAGES = {"english": 1, "german": 2}

ACCENTS = {
    "english": ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                "en-029", "en-us-nyc"),
    "german": ("de",),
}
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt3", "croak")
# Babble talkers say sentences without digits or their homophones (to, for, ate, ein, ...).
BABBLE_TEXT = {
    "english": (
        "the quick brown fox jumps over the lazy dog",
        "she sells sea shells by the sea shore",
        "please call stella and ask her about the things we need from the store",
        "we have a big party planned this weekend at the lake",
        "my brother always walks the dog in the park after dinner",
        "the weather was cold and windy all through last month",
        "could you pass me the salt and the pepper please",
        "they painted the old barn a bright shade of red",
        "birds were singing outside the kitchen window this morning",
        "it is hard with all of this noise around us",
    ),
    "german": (
        "der schnelle braune fuchs springt über den faulen hund",
        "heute ist das wetter wirklich schön und warm",
        "wir gehen morgen früh mit dem hund spazieren",
        "kannst du mir bitte das salz geben",
        "die kinder spielen im garten hinter dem haus",
        "am wochenende besuchen wir unsere großeltern",
        "der zug kommt heute leider später an",
    ),
}
BABBLE_POOL_SIZE = 24
_PUNCTUATION = ("", ".", "!", "?")  # changes eSpeak's intonation


@dataclass(frozen=True)
class SynthSpec(Knobs):
    """The difficulty knobs of a synthetic task; each (low, high) pair is drawn uniformly per clip.

    snr_db: speech (active part) to noise ratio; noise_kinds: drawn uniformly per clip (repeat
    a kind to weight it); babble_talkers: how many talkers a babble noise mixes.
    band_limit_prob: chance of a band-pass band_low_hz..band_high_hz (edges drawn per clip).
    reverb_prob: chance of a synthetic room with rt60_s and direct-to-reverberant ratio drr_db.
    rate_wpm, pitch, pitch_range: eSpeak prosody. gain_db: level around -26 dBFS RMS.
    onset_s: leading silence; clip_s: clip length. holdout_*: how many variants / accents (per
    language, at least one left for training) only the test split uses.
    """

    snr_db: tuple[float, float] = (-5.0, 5.0)
    noise_kinds: tuple[str, ...] = ("babble", "pink", "white")
    babble_talkers: tuple[float, float] = (3.0, 6.0)
    band_limit_prob: float = 0.5
    band_low_hz: tuple[float, float] = (100.0, 500.0)
    band_high_hz: tuple[float, float] = (1500.0, 4000.0)
    reverb_prob: float = 0.5
    rt60_s: tuple[float, float] = (0.2, 0.9)
    drr_db: tuple[float, float] = (-3.0, 10.0)
    rate_wpm: tuple[float, float] = (120.0, 240.0)
    pitch: tuple[float, float] = (10.0, 90.0)
    pitch_range: tuple[float, float] = (10.0, 90.0)
    gain_db: tuple[float, float] = (-10.0, 10.0)
    onset_s: tuple[float, float] = (0.0, 0.3)
    clip_s: float = 1.0
    holdout_variants: int = 4
    holdout_accents: int = 2

    WHAT: ClassVar[str] = "synthetic speech settings"

    def __post_init__(self) -> None:
        self._check_ranges()
        kinds = tuple(str(k) for k in self.noise_kinds)
        bad = [k for k in kinds if k not in augment.NOISE_KINDS]
        if not kinds or bad:
            raise BadInput(f"synthetic noise_kinds must be among "
                           f"{', '.join(augment.NOISE_KINDS)}, got {self.noise_kinds!r}")
        object.__setattr__(self, "noise_kinds", kinds)
        for name in ("band_limit_prob", "reverb_prob"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise BadInput(f"synthetic setting {name} must be in 0..1")
        if not 0.1 <= float(self.clip_s) <= 10.0:
            raise BadInput(f"synthetic clip_s must be in 0.1..10 s, got {self.clip_s}")
        if self.rt60_s[0] <= 0 or self.band_low_hz[0] <= 0 or self.band_high_hz[0] <= self.band_low_hz[1]:
            raise BadInput("synthetic rt60_s and band edges must be positive, low band below high band")
        if self.babble_talkers[0] < 1:
            raise BadInput("synthetic babble_talkers must be >= 1")
        if int(self.holdout_variants) < 0 or int(self.holdout_accents) < 0:
            raise BadInput("synthetic holdout counts must be >= 0")


def voice_split(language: str, spec: SynthSpec, seed: int) -> tuple[list[str], list[str]]:
    """(train voices, test voices) of one language; disjoint unless nothing is held out."""
    accents, variants = ACCENTS[language], VARIANTS
    rng = np.random.default_rng([seed, 0x5EED, LANGUAGES[language]])
    k_acc = min(int(spec.holdout_accents), len(accents) - 1)
    k_var = min(int(spec.holdout_variants), len(variants) - 1)
    held_acc = set(rng.choice(len(accents), k_acc, replace=False).tolist())
    held_var = set(rng.choice(len(variants), k_var, replace=False).tolist())
    train, test = [], []
    for i, accent in enumerate(accents):
        for j, variant in enumerate(variants):
            (test if i in held_acc or j in held_var else train).append(f"{accent}+{variant}")
    if not test:
        test = list(train)
    return train, test


def _trim(x: np.ndarray, rel: float = 0.01) -> np.ndarray:
    """Drop leading and trailing samples quieter than `rel` of the peak."""
    loud = np.flatnonzero(np.abs(x) > rel * (np.abs(x).max() + 1e-12))
    return x[loud[0]:loud[-1] + 1] if len(loud) else x


@dataclass(frozen=True)
class Utterance:
    """What eSpeak is asked to say: text, voice and prosody (and the library's own seed)."""

    text: str
    voice: str
    rate_wpm: int
    pitch: int
    pitch_range: int
    seed: int

    @classmethod
    def draw(cls, text: str, voice: str, rng: np.random.Generator, spec: SynthSpec) -> "Utterance":
        return cls(text, voice, int(round(rng.uniform(*spec.rate_wpm))),
                   int(round(rng.uniform(*spec.pitch))), int(round(rng.uniform(*spec.pitch_range))),
                   int(rng.integers(1, 2**31 - 1)))

    def speak(self) -> np.ndarray:
        """The trimmed utterance at SAMPLE_RATE_HZ."""
        audio, rate_hz = synthesize(self.text, self.voice, self.rate_wpm, self.pitch,
                                    self.pitch_range, self.seed)
        return _trim(resample(audio, rate_hz, SAMPLE_RATE_HZ))


def babble_pool(voices: dict[str, list[str]], spec: SynthSpec, seed: int, split: str) -> list[np.ndarray]:
    """Utterances of non-digit sentences by the split's own voices, to mix into babble noise."""
    rng = np.random.default_rng([seed, 0xBAB, SPLITS[split]])
    languages = sorted(voices)
    pool = []
    for i in range(BABBLE_POOL_SIZE):
        language = languages[i % len(languages)]
        text = BABBLE_TEXT[language][int(rng.integers(len(BABBLE_TEXT[language])))]
        voice = voices[language][int(rng.integers(len(voices[language])))]
        utterance = Utterance.draw(text, voice, rng, spec).speak()
        if len(utterance):
            pool.append(utterance)
    return pool


@dataclass(frozen=True)
class ClipPlan:
    """Every random setting of one clip, drawn before synthesis."""

    utterance: Utterance
    onset_u: float
    reverb: tuple[float, float] | None  # (rt60 s, drr dB)
    noise: str
    snr_db: float
    band_hz: tuple[float, float] | None
    gain_db: float

    @classmethod
    def draw(cls, label: int, voice: str, rng: np.random.Generator, spec: SynthSpec) -> "ClipPlan":
        # A fixed order of draws, so that one knob does not shift the others' values.
        text = label_text(label) + _PUNCTUATION[int(rng.integers(len(_PUNCTUATION)))]
        onset_u = rng.uniform()
        use_reverb = rng.uniform() < spec.reverb_prob
        rt60, drr = rng.uniform(*spec.rt60_s), rng.uniform(*spec.drr_db)
        kind = spec.noise_kinds[int(rng.integers(len(spec.noise_kinds)))]
        snr = rng.uniform(*spec.snr_db)
        use_band = rng.uniform() < spec.band_limit_prob
        low, high = rng.uniform(*spec.band_low_hz), rng.uniform(*spec.band_high_hz)
        gain = rng.uniform(*spec.gain_db)
        return cls(Utterance.draw(text, voice, rng, spec), onset_u,
                   (rt60, drr) if use_reverb else None, kind, snr,
                   (low, high) if use_band else None, gain)


def render_clip(plan: ClipPlan, speech: np.ndarray, rng: np.random.Generator, spec: SynthSpec,
                pool: Sequence[np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
    """The degraded clip of `spec.clip_s` seconds: onset, reverb, noise at the SNR of the
    active speech, band-limit, level; and its settings."""
    sr, n = SAMPLE_RATE_HZ, int(round(spec.clip_s * SAMPLE_RATE_HZ))
    speech = speech[:n]
    free = (n - len(speech)) / sr
    latest = max(0.0, min(spec.onset_s[1], free) - spec.onset_s[0])
    onset_s = min(spec.onset_s[0], free) + plan.onset_u * latest
    start = int(onset_s * sr)
    clip = np.zeros(n, np.float32)
    clip[start:start + len(speech)] = speech
    if plan.reverb is not None:
        clip = augment.reverberate(clip, sr, plan.reverb[0], plan.reverb[1], rng)
    active = clip[start:start + max(len(speech), 1)]
    power = float(np.mean(active.astype(np.float64) ** 2)) + 1e-12
    talkers = (int(spec.babble_talkers[0]), int(spec.babble_talkers[1]))
    noise = augment.make_noise(plan.noise, n, rng, pool, talkers)
    clip = augment.add_noise(clip, noise, plan.snr_db, power)
    if plan.band_hz is not None:
        clip = augment.band_limit(clip, sr, plan.band_hz[0], plan.band_hz[1])
    clip *= 10 ** ((plan.gain_db - 26.0) / 20) / (np.sqrt(np.mean(clip.astype(np.float64) ** 2)) + 1e-12)
    meta = {"voice": plan.utterance.voice, "text": plan.utterance.text, "onset_s": round(onset_s, 4),
            "noise": plan.noise, "snr_db": round(plan.snr_db, 2),
            "reverb_rt60_s": round(plan.reverb[0], 3) if plan.reverb else None,
            "band_hz": [round(b) for b in plan.band_hz] if plan.band_hz else None,
            "gain_db": round(plan.gain_db, 2)}
    return clip.astype(np.float32), meta


def iter_samples(labels: Sequence[int], split: str, n_per_class: int, spec: SynthSpec,
                 seed: int, prefetch: int = 8) -> Iterator[tuple[np.ndarray, int, dict[str, Any]]]:
    """Yield (clip at SAMPLE_RATE_HZ, label, settings) for `n_per_class` clips of each label,
    classes interleaved; voices are the split's voices of each label's language. Synthesis runs
    `prefetch` clips ahead in a thread, so eSpeak and the numpy work overlap."""
    languages = sorted({label_language(lab) for lab in labels})
    voices = {lang: voice_split(lang, spec, seed)[0 if split == "train" else 1] for lang in languages}
    pool = babble_pool(voices, spec, seed, split) if "babble" in spec.noise_kinds else []

    def plans() -> Iterator[tuple[int, np.random.Generator, ClipPlan]]:
        for i in range(n_per_class):
            for label in labels:
                rng = np.random.default_rng([seed, SPLITS[split], int(label), i])
                lang_voices = voices[label_language(label)]
                voice = lang_voices[int(rng.integers(len(lang_voices)))]
                yield int(label), rng, ClipPlan.draw(int(label), voice, rng, spec)

    def finish(item: tuple) -> tuple[np.ndarray, int, dict[str, Any]]:
        label, rng, plan, speech = item
        clip, meta = render_clip(plan, speech.result(), rng, spec, pool)
        return clip, label, meta

    with ThreadPoolExecutor(max_workers=1) as executor:
        pending: deque = deque()
        for label, rng, plan in plans():
            pending.append((label, rng, plan, executor.submit(plan.utterance.speak)))
            if len(pending) > prefetch:
                yield finish(pending.popleft())
        while pending:
            yield finish(pending.popleft())
