"""The emulated crossbar board: device physics, read chain, board firmware, SMU, server process.

What it may import: docs/architecture.md.
"""
