"""Command line (installed as `imssa_hw.cli`): the `imssa-hw` click group and its commands.

What it may import: docs/architecture.md.
"""
