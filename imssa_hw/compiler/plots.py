"""PNG of the target conductance maps (matplotlib's Agg canvas, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imssa_hw.compiler.artifact import Deployment
from imssa_hw.files import atomic_path, remove_stale

TARGETS_PNG = "targets.png"
"""The file name of `plot_targets`' picture in a deploy directory."""


def plot_targets(deployment: Deployment, path: str | Path) -> Path:
    """One panel per array in use: targets in uS, cells that carry no signal in grey."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    arrays = sorted({t.array for t in deployment.placement.tiles})
    columns = min(len(arrays), 4)
    lines = -(-len(arrays) // columns)
    fig = Figure(figsize=(3.6 * columns + 0.8, 3.4 * lines))
    FigureCanvasAgg(fig)
    g_max_us = deployment.profile.conductance.g_max_siemens * 1e6
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = None
    for i, array in enumerate(arrays):
        ax = fig.add_subplot(lines, columns, i + 1)
        shown = np.ma.masked_where(~deployment.used[array], deployment.targets_siemens[array] * 1e6)
        image = ax.imshow(shown, cmap=cmap, vmin=0, vmax=g_max_us, interpolation="nearest")
        tiles = sum(t.array == array for t in deployment.placement.tiles)
        ax.set_title(f"array {array}: {tiles} kernel{'s' * (tiles != 1)}", fontsize=9)
        ax.set_xticks([0, deployment.profile.geometry.cols - 1])
        ax.set_yticks([0, deployment.profile.geometry.rows - 1])
        ax.tick_params(labelsize=7)
        if i % columns == 0:
            ax.set_ylabel("row", fontsize=8)
        if i >= len(arrays) - columns:
            ax.set_xlabel("column", fontsize=8)
    fig.colorbar(image, ax=fig.axes, label="target conductance (uS); grey: no signal")
    fig.suptitle(f"{deployment.summary['kernels']} kernels, {deployment.config.bits}-bit, "
                 f"dG = {deployment.dg_siemens * 1e6:.2f} uS ({deployment.profile.name})",
                 fontsize=10)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return path


def write_targets_plot(deployment: Deployment, folder: str | Path, plots: bool = True
                       ) -> list[Path]:
    """With `plots`, `plot_targets` into `folder`/TARGETS_PNG; without, an earlier run's picture
    there is removed (it would show another deployment). Returns the files written."""
    if plots:
        return [plot_targets(deployment, Path(folder) / TARGETS_PNG)]
    remove_stale(folder, [TARGETS_PNG])
    return []
