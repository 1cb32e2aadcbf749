"""Label ids in the Heidelberg Digits convention: 0-9 English digits, 10-19 German (digit + 10)."""

from __future__ import annotations

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
