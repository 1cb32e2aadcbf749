"""Write-verify programming of a compiled deployment onto a board (`imssa-hw program`).

    from imssa_hw.programming import program_deployment
    result = program_deployment(board, dep, calibration=cal, tolerance="2uS",
                                journal="deploy/program/journal.jsonl")

See docs/programming.md: the strategies (adaptive, the HPE ramp baseline, open loop), the journal
and --resume, the report.
"""

from imssa_hw.programming.runner import (ProgramResult, merge_defects, program_deployment,
                                         program_targets)
from imssa_hw.programming.settings import Settings, Tolerance, parse_tolerance
from imssa_hw.programming.strategies import STRATEGIES
from imssa_hw.programming.strategy import STATUS_NAMES

__all__ = ["ProgramResult", "STATUS_NAMES", "STRATEGIES", "Settings", "Tolerance",
           "merge_defects", "parse_tolerance", "program_deployment", "program_targets"]
