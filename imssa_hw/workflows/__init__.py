"""Whole flows on an emulated board: the demo (`demo`), the noise sweep (`sweep`) and the cache
of trained default models they share (`model_cache`).

May import everything below it: model, training, compiler, emulator, drivers, calibration,
programming, hil, data.
"""
