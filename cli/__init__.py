"""Command line (installed as `imssa_hw.cli`): the `imssa-hw` click group and its commands.

May import everything.
"""
