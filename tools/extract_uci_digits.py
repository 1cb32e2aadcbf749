"""Write imssa_hw/data/uci_digits/digits.npz: the 8x8 UCI optical digits (the 1797 images that
scikit-learn ships as `load_digits`; UCI "Optical Recognition of Handwritten Digits", CC BY 4.0)
as sequences of 8 rows of 8 pixels, split 75/25 per class by a fixed seed.

Needs scikit-learn, which imssa-hw itself never imports: run it once in a separate venv
(`pip install scikit-learn`), `python tools/extract_uci_digits.py`. The file is byte-identical
run to run for one scikit-learn data file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent.parent / "imssa_hw" / "data" / "uci_digits" / "digits.npz"
TEST_FRACTION = 0.25
SEED = 0


def main() -> None:
    digits = load_digits()
    images = digits.images.astype(np.uint8)  # integers 0..16: 4x4 blocks of a 32x32 bitmap
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(SEED)
    test = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        test[rng.choice(members, int(round(TEST_FRACTION * len(members))), replace=False)] = True
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=images[~test], y_train=labels[~test],
                        x_test=images[test], y_test=labels[test],
                        class_names=np.array([str(d) for d in range(10)]))
    OUT.write_bytes(buffer.getvalue())
    print(f"wrote {OUT}: {int((~test).sum())} training and {int(test.sum())} test images")


if __name__ == "__main__":
    main()
