"""imssa-hw: deploy S4D state-space models on memristive crossbar hardware (the IMSSA method)."""

__version__ = "0.11.0"
