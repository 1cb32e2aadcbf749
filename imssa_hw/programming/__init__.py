"""Write-verify programming of a compiled deployment onto a board (`imssa-hw program`).

    from imssa_hw.programming import program_deployment
    result = program_deployment(board, dep, calibration=cal,  # the deployment's tolerance
                                journal="deploy/program/journal.jsonl")

See docs/programming.md: the strategies (adaptive, the HPE ramp baseline, open loop), the journal
and --resume, the report. The names below load their module on first use, so that the command
line can import the strategy names (`programming.names`) without numpy.

What it may import: docs/architecture.md.
"""

from importlib import import_module

_EXPORTS = {"ProgramResult": "runner", "merge_defects": "runner",
            "program_deployment": "runner", "program_targets": "runner",
            "ProgramSettings": "settings", "Tolerance": "settings", "parse_tolerance": "settings",
            "STRATEGIES": "strategies", "STATUS_NAMES": "strategy", "StrategyName": "names"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
