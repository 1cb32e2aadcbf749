"""PNG figures of an inference run: confusion matrices and output traces, hardware vs software."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imssa_hw.inference import InferenceResult, confusion


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_confusions(result: InferenceResult, class_names: list[str], path: str | Path) -> Path:
    """Side-by-side confusion matrices (hardware, software) with counts."""
    plt = _figure()
    n = len(class_names)
    fig, axes = plt.subplots(1, 2, figsize=(4 + 0.5 * n, 2.2 + 0.25 * n), squeeze=False)
    for ax, (title, pred) in zip(axes[0], (("hardware", result.hardware_pred),
                                            ("software", result.software_pred))):
        counts = confusion(result.labels, pred, n)
        acc = 100 * float((pred == result.labels).mean())
        ax.imshow(counts, cmap="Blues")
        ax.set_title(f"{title}: {acc:.2f} %")
        ax.set_xticks(range(n), class_names, rotation=90 if n > 4 else 0)
        ax.set_yticks(range(n), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if n <= 10:
            for (i, j), c in np.ndenumerate(counts):
                ax.text(j, i, str(c), ha="center", va="center",
                        color="white" if c > counts.max() / 2 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_traces(result: InferenceResult, path: str | Path, kernels: int = 3) -> Path:
    """First-layer S4D outputs y_t of a few samples and kernels, hardware over software."""
    plt = _figure()
    hw, sw = result.traces["hardware_y"], result.traces["software_y"]
    samples = min(2, len(hw))
    kernels = min(kernels, hw.shape[2])
    fig, axes = plt.subplots(samples, kernels, figsize=(3.2 * kernels, 2.2 * samples),
                             squeeze=False, sharex=True)
    for s in range(samples):
        for k in range(kernels):
            ax = axes[s][k]
            ax.plot(sw[s, :, k], color="0.3", lw=2, label="software")
            ax.plot(hw[s, :, k], color="tab:red", lw=1, ls="--", label="hardware")
            ax.set_title(f"sample {s}, kernel {k}", fontsize=9)
            if s == samples - 1:
                ax.set_xlabel("step")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
