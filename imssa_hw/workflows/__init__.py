"""Whole flows on an emulated board: the demo (`demo`), the noise sweep (`sweep`) and the cache
of trained default models they share (`model_cache`).

What it may import: docs/architecture.md.
"""
