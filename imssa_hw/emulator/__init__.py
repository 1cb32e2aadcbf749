"""The emulated crossbar board: device physics, read chain, board firmware, SMU, server process."""
