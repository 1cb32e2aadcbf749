"""What a board is: one parameter tree that the compiler profile, the driver's `BoardInfo` and
the emulator profile all convert to (geometry, conductance window, read chain, pulse limits),
checked against one table of ranges (`params.RANGES`), the one check that a deployment fits a
board, the board's tables of a profile file (`tables`), and the converters' arithmetic
(`converters`: steps, rounding, saturation).

Imports nothing of imssa_hw but the shared `errors`; everything else may import it.
"""

from imssa_hw.board.params import (CELLS, BoardSpec, ConductanceWindow, Geometry, PulseLimits,
                                   ReadChainSpec)

__all__ = ["CELLS", "BoardSpec", "ConductanceWindow", "Geometry", "PulseLimits", "ReadChainSpec"]
