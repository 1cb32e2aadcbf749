"""Render the flite voices shipped in imssa_hw/data/flite (a maintainer's tool, not a runtime
dependency: it needs the flite program, e.g. Debian's `apt-get install flite`).

Four CMU voices (awb, rms, slt, kal16) say every English digit at five speaking rates; the
clips are written as 16 kHz FLAC in the Heidelberg Digits layout, as speakers 10-13, with a
train list. Run from the repository root:

    python tools/render_flite_digits.py imssa_hw/data/flite
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

VOICES = {"awb": 10, "rms": 11, "slt": 12, "kal16": 13}
"""flite voice name -> speaker id in the file names."""
DURATION_STRETCHES = (0.8, 0.9, 1.0, 1.1, 1.25)
"""flite's duration_stretch per trial: below 1 is faster speech."""
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
RATE_HZ = 16000


def render(word: str, voice: str, stretch: float) -> np.ndarray:
    """One utterance as float32 samples at RATE_HZ."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "clip.wav"
        subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}",
                        "-t", word, "-o", str(wav)], check=True, capture_output=True)
        audio, rate = sf.read(str(wav), dtype="float32")
    if rate != RATE_HZ:
        raise SystemExit(f"flite voice {voice} renders at {rate} Hz, expected {RATE_HZ}")
    return audio


def main(out: Path) -> None:
    (out / "audio").mkdir(parents=True, exist_ok=True)
    names = []
    for voice, speaker in VOICES.items():
        for digit, word in enumerate(WORDS):
            for trial, stretch in enumerate(DURATION_STRETCHES):
                name = f"lang-english_speaker-{speaker:02d}_trial-{trial}_digit-{digit}.flac"
                sf.write(str(out / "audio" / name), render(word, voice, stretch), RATE_HZ,
                         subtype="PCM_16")
                names.append(name)
    (out / "train_filenames.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"{len(names)} clips in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "imssa_hw/data/flite"))
