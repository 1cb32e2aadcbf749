"""Optional dependencies: what each one is for and the extra that installs it.

`pip install -e .` is the light install: boards, calibration, compiling, programming, inference
and journals, without torch. Training and fine-tuning need torch (`[train]`); the ArC TWO
needs pyarc2 (`[arc2]`); a Dask scheduler for `sweep` needs distributed (`[dask]`).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from imssa_hw.errors import BadInput

EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("training and fine-tuning need", "train"),
    "pyarc2": ("arc2:// ports need", "arc2"),
    "distributed": ("a Dask scheduler needs", "dask"),
}
"""module -> (what needs it, the extra that installs it)."""
CPU_TORCH = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
"""torch's CPU build: an unpinned `torch` pulls a multi-GB CUDA build."""


def available(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def missing(module: str) -> str:
    """The one-line message for a missing optional `module` (one of EXTRAS)."""
    what, extra = EXTRAS[module]
    hint = f" (without a GPU, first the CPU build: {CPU_TORCH})" if module == "torch" else ""
    return f"{what} {module}, which is not installed: pip install 'imssa-hw[{extra}]'{hint}"


def require(module: str) -> ModuleType:
    """`module`, imported; BadInput naming the extra that installs it when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BadInput(missing(module)) from None
