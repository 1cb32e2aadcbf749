"""What an inference run writes: the JSON report and PNG figures (confusion matrices and output
traces, hardware vs software)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imssa_hw.data.labels import confusion
from imssa_hw.hil.inference import InferenceResult


def plot_confusions(result: InferenceResult, class_names: list[str], path: str | Path) -> Path:
    """Side-by-side confusion matrices (hardware, software) with counts."""
    from matplotlib.figure import Figure

    n = len(class_names)
    fig = Figure(figsize=(4 + 0.5 * n, 2.2 + 0.25 * n))
    axes = fig.subplots(1, 2, squeeze=False)
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
    return Path(path)


def plot_traces(result: InferenceResult, path: str | Path, kernels: int = 3) -> Path:
    """First-layer S4D outputs y_t of a few samples and kernels, hardware over software."""
    from matplotlib.figure import Figure

    hw, sw = result.traces["hardware_y"], result.traces["software_y"]
    samples = min(2, len(hw))
    kernels = min(kernels, hw.shape[2])
    fig = Figure(figsize=(3.2 * kernels, 2.2 * samples))
    axes = fig.subplots(samples, kernels, squeeze=False, sharex=True)
    for s in range(samples):
        for k in range(kernels):
            ax = axes[s][k]
            ax.plot(sw[s, :, k], color="0.3", lw=2, label="software")
            ax.plot(hw[s, :, k], color="tab:red", lw=1, ls="--", label="hardware")
            ax.set_title(f"sample {s}, kernel {k}", fontsize=9)
            if s == samples - 1:
                ax.set_xlabel("step")
            if k == 0:
                ax.set_ylabel("S4D output y (model units)", fontsize=8)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def write_inference_outputs(result: InferenceResult, summary: dict, class_names: list[str],
                            out_dir: str | Path, report: str | Path | None, *,
                            plots: bool = True) -> list[Path]:
    """The JSON report (if asked) and, with `plots`, the PNGs (without, those of an earlier
    run in this mode are removed from `out_dir`); returns the paths written."""
    from imssa_hw.files import remove_stale, write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    confusion, traces = f"confusion-{result.mode}.png", f"traces-{result.mode}.png"
    if plots:
        written = [plot_confusions(result, class_names, out_dir / confusion),
                   plot_traces(result, out_dir / traces)]
    else:
        written = []
        remove_stale(out_dir, (confusion, traces))
    if report:
        write_json(report, {**summary, "class_names": class_names})
        written.append(Path(report))
    return written
