"""Where the recurrence of a kernel runs during inference (a light module: the command line
imports it for its choices)."""

from enum import StrEnum


class InferenceMode(StrEnum):
    """Where the recurrence runs."""

    HOST = "host"
    """The host computes every step's row voltages and runs one VMM per array per step."""
    ONBOARD = "onboard"
    """The board runs a whole layer with its own column-to-row feedback (the loop program)."""
