"""Add FSDD speakers to the shipped recordings in imssa_hw/data/fsdd (a maintainer's tool, not
run by the product: it needs a checkout of github.com/Jakobovski/free-spoken-digit-dataset).

Each speaker's 500 WAV files (8 kHz, mono, 16-bit; `recordings/{digit}_{name}_{trial}.wav`) are
written as FLAC with unchanged samples, named in the Heidelberg Digits layout under the speaker
id given here, and appended to train_filenames.txt: training speakers only, never a test list.
Run from the repository root:

    python tools/add_fsdd_speakers.py FSDD_CHECKOUT imssa_hw/data/fsdd
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SPEAKERS = {"theo": 4, "yweweler": 5}
"""FSDD speaker name -> speaker id in the file names (00-03 are george, jackson, lucas, nicolas)."""
DIGITS = range(10)
TRIALS = range(50)
RATE_HZ = 8000


def convert(wav: Path, flac: Path) -> None:
    """One recording to FLAC, samples unchanged."""
    samples, rate = sf.read(str(wav), dtype="int16")
    if rate != RATE_HZ or samples.ndim != 1:
        raise SystemExit(f"{wav}: expected mono {RATE_HZ} Hz, got {rate} Hz, shape {samples.shape}")
    sf.write(str(flac), samples, rate, subtype="PCM_16")
    back, _ = sf.read(str(flac), dtype="int16")
    if not np.array_equal(back, samples):
        raise SystemExit(f"{flac}: FLAC did not keep the samples")


def main(checkout: Path, out: Path) -> None:
    listed = (out / "train_filenames.txt").read_text().split()
    names = []
    for speaker, number in SPEAKERS.items():
        for digit in DIGITS:
            for trial in TRIALS:
                name = f"lang-english_speaker-{number:02d}_trial-{trial}_digit-{digit}.flac"
                convert(checkout / "recordings" / f"{digit}_{speaker}_{trial}.wav",
                        out / "audio" / name)
                names.append(name)
    added = set(names)
    kept = [n for n in listed if n not in added]
    (out / "train_filenames.txt").write_text("\n".join(kept + names) + "\n")
    print(f"{len(names)} recordings of {len(SPEAKERS)} speakers added to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
