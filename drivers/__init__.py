"""Device-driver layer (installed as `imssa_hw.drivers`): board protocol, serial link, SMU.

What it may import: docs/architecture.md.
"""
