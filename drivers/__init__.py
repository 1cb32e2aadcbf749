"""Device-driver layer (installed as `imssa_hw.drivers`): board protocol, serial link, SMU.

May import: `imssa_hw.board`, `errors`, `files`.
"""
