"""Label ids in the Heidelberg Digits convention: 0-9 English digits, 10-19 German (digit + 10)."""

from __future__ import annotations

import numpy as np

EN_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DE_WORDS = ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun")
N_LABELS = 20


def check_label(label: int) -> int:
    if not 0 <= int(label) < N_LABELS:
        raise ValueError(f"label {label} is outside 0..{N_LABELS - 1}")
    return int(label)


def label_language(label: int) -> str:
    """"english" or "german"."""
    return "english" if check_label(label) < 10 else "german"


def label_text(label: int) -> str:
    """The spoken word (UTF-8, what eSpeak is asked to say)."""
    label = check_label(label)
    return EN_WORDS[label] if label < 10 else DE_WORDS[label - 10]


def label_name(label: int) -> str:
    """ASCII class name: "zero".."nine", "null".."neun" ("fuenf" for fünf)."""
    return label_text(label).replace("ü", "ue")


def confusion(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (labels, pred), 1)
    return counts


def worst_confusions(counts: np.ndarray, names: list[str], most: int = 3) -> list[dict]:
    """The `most` largest off-diagonal cells of `counts[true, predicted]`, largest first:
    [{"true", "predicted", "count", "of"}] with class names; empty when nothing is confused."""
    counts = np.asarray(counts)
    off = counts * (1 - np.eye(len(counts), dtype=counts.dtype))
    order = np.argsort(-off, axis=None, kind="stable")[:most]
    return [{"true": names[t], "predicted": names[p], "count": int(off[t, p]),
             "of": int(counts[t].sum())}
            for t, p in zip(*np.unravel_index(order, off.shape)) if off[t, p] > 0]
