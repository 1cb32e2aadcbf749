"""The emulated crossbar board: device physics, read chain, board firmware, SMU, server process.

May import: `imssa_hw.drivers` (the protocol it serves), `imssa_hw.board`, `errors`,
`files`.
"""
