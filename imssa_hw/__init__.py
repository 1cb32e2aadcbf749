"""imssa-hw: deploy S4D state-space models on memristive crossbar hardware (the IMSSA method).

The Python API (`imssa_hw.api`, docs/api.md): `train`, `load_model`, `shipped_model`,
`open_board`, `calibrate`, `compile`, `program`, `infer`. They load on first use, so that
`import imssa_hw` stays light.
"""

__version__ = "0.22.0"

API = ("train", "load_model", "shipped_model", "open_board", "calibrate", "compile", "program",
       "infer")
__all__ = ["__version__", *API]


def __getattr__(name: str) -> object:
    if name in API:
        from imssa_hw import api

        return getattr(api, name)
    raise AttributeError(f"module 'imssa_hw' has no attribute {name!r}")
