"""What a board is: one parameter tree that the compiler profile, the driver's `BoardInfo` and
the emulator profile all convert to (geometry, conductance window, read chain, pulse limits),
and the one check that a deployment fits a board.

Imports nothing of imssa_hw; everything else may import it.
"""

from imssa_hw.board.params import (CELLS, BoardSpec, ConductanceWindow, Geometry, PulseLimits,
                                   ReadChainSpec)

__all__ = ["CELLS", "BoardSpec", "ConductanceWindow", "Geometry", "PulseLimits", "ReadChainSpec"]
