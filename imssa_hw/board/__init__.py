"""What a board is: one parameter tree that the board profile, the driver's `BoardInfo` and
the emulator profile all convert to (geometry, conductance window, read chain, pulse limits),
checked against one table of ranges (`params.RANGES`), the one check that a deployment fits a
board, the board's tables of a profile file (`tables`), the converters' arithmetic
(`converters`: steps, rounding, saturation), and the board profile (`profile`: `BoardProfile`,
`load_board_profile`), a board as the compiler and hardware-aware training see it.

What it may import: docs/architecture.md.
"""

from imssa_hw.board.params import (CELLS, BoardSpec, ConductanceWindow, Geometry, PulseLimits,
                                   ReadChainSpec)
from imssa_hw.board.profile import BoardProfile, load_board_profile, shipped_profiles

__all__ = ["CELLS", "BoardProfile", "BoardSpec", "ConductanceWindow", "Geometry", "PulseLimits",
           "ReadChainSpec", "load_board_profile", "shipped_profiles"]
