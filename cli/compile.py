"""`imssa-hw compile`: a quantized checkpoint -> a deploy directory for a board (no torch)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click

from imssa_hw.cli.options import SEED, FiniteFloat, OutputPath, plots_option
from imssa_hw.compiler.placement import PlacementMode
from imssa_hw.model.checkpoint import CHECKPOINT_FILE


@click.command("compile")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", type=OutputPath(folder=True), required=True,
              help="Deploy directory to write: deploy.json, targets.npz, targets.png.")
@click.option("--profile", default="board-default", show_default=True,
              help="Board profile: a shipped name (board-default, board-multi, board-large) or "
                   "a TOML file.")
@click.option("--defects", type=click.Path(path_type=Path), default=None,
              help="defects.json from `imssa-hw calibrate`: stuck devices to place around.")
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="Calibration folder from `imssa-hw calibrate`: the columns' TIA offsets, so "
                   "that both columns of every differential pair get the same fractional offset "
                   "(recommended; without it the pairs take any columns).")
@click.option("--report", type=OutputPath(), default=None,
              help="Write the compile report (JSON) here.")
@click.option("--headroom", type=FiniteFloat(0, 1, min_open=True), default=0.9, show_default=True,
              help="Fraction of the read voltage the largest known signal may use (0..1].")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the random probe sequences.")
@click.option("--parallel-tiles", is_flag=True,
              help="Run all tiles of a layer on an array in one VMM per step (fewer VMMs, but the "
                   "off devices between tiles add their errors to every column). Default: each "
                   "kernel's tile alone, the other rows at 0 V. Needs diagonal placement.")
@click.option("--placement", type=click.Choice([m.value for m in PlacementMode]),
              default=PlacementMode.AUTO.value, show_default=True,
              help="How kernel tiles share an array. diagonal: no two tiles share a row or a "
                   "column, min(rows // tile rows, cols // tile cols) tiles per array. dense: a "
                   "grid of (rows // tile rows) x (cols // tile cols) tiles per array that share "
                   "rows and columns but no cells; correct because each kernel runs alone in its "
                   "VMM (the other rows at 0 V, only its columns read), so not with "
                   "--parallel-tiles; the same VMMs per step, fewer spare lines to place around "
                   "stuck devices. auto: diagonal when the model fits the board that way, else "
                   "dense. A model that does not fit names the arrays each mode needs.")
@click.option("--repair/--no-repair", default=True, show_default=True,
              help="With --defects: re-fit each kernel whose tile holds stuck devices that "
                   "placement could not avoid (the pair partner compensates, the readout is "
                   "re-fitted, or a spoiled mode is switched off, whichever keeps the kernel's "
                   "impulse response nearest). --no-repair leaves them, to measure the gain.")
@plots_option("targets.png (the target conductance maps) into --out")
def compile_command(checkpoint: Path, out: Path, profile: str, defects: Path | None,
                    calibration: Path | None, report: Path | None, headroom: float,
                    seed: int, parallel_tiles: bool, placement: str, repair: bool,
                    plots: bool) -> None:
    """Compile CHECKPOINT (from `imssa-hw train`) into conductance targets, a placement and a
    feedback-delay schedule for the board, and check them on the ideal crossbar."""
    from imssa_hw.model.checkpoint import load_checkpoint
    from imssa_hw.board import load_board_profile
    from imssa_hw.compiler import compile_checkpoint, load_defects, save_deployment
    from imssa_hw.compiler.artifact import DEPLOY_JSON, TARGETS_NPZ, copy_checkpoint
    from imssa_hw.compiler.plots import write_targets_plot
    from imssa_hw.files import write_json

    start = time.perf_counter()
    board = load_board_profile(profile)
    defect_map = load_defects(defects, board.geometry) if defects else None
    offsets = None
    if calibration is not None:
        from imssa_hw.calibration.data import load_calibration
        cal = load_calibration(calibration)
        offsets = cal.offset_codes(board.read.adc_bits)
    ckpt = load_checkpoint(checkpoint)
    deployment = compile_checkpoint(ckpt, board, defect_map, seed=seed, headroom=headroom,
                                    column_offsets_codes=offsets, parallel=parallel_tiles,
                                    placement=placement, repair_defects=repair)
    save_deployment(deployment, out)
    copy_checkpoint(checkpoint / CHECKPOINT_FILE if checkpoint.is_dir() else checkpoint, out)
    written = [out / DEPLOY_JSON, out / TARGETS_NPZ, *write_targets_plot(deployment, out, plots)]
    s = deployment.summary
    if report:
        write_json(report, {**s, "checkpoint": str(checkpoint), "out": str(out),
                            "defects": str(defects) if defects else None,
                            "wall_time_s": round(time.perf_counter() - start, 3)})
    geo = board.geometry
    click.echo(f"compiled {checkpoint}: {s['layers']} layer(s) x {ckpt.config.h} kernels, "
               f"N={s['state_size']}, {s['bits']}-bit, for {board.name}")
    click.echo(f"  arrays used    {s['arrays_used']} of {geo.arrays} ({s['placement']} placement, "
               f"at most {s['kernels_per_array']} kernels per {geo.rows}x{geo.cols} array, tiles "
               f"{s['tile_rows']}x{s['tile_cols']}, differential {s['differential']})")
    click.echo(f"  tiles/array    {', '.join(map(str, s['tiles_per_array']))} (spare rows "
               f"{_span(s['array_use'], 'spare_rows')}, spare columns "
               f"{_span(s['array_use'], 'spare_cols')})")
    click.echo(f"  cells used     {s['cells_used']} in tiles, {s['cells_that_matter']} that matter "
               f"({100 * s['utilization']:.1f} % of the arrays used)")
    click.echo(f"  levels         {s['signed_levels']} signed ({s['levels_per_device']} per "
               f"device), dG = {s['dg_siemens'] * 1e6:.3f} uS, G {s['g_min_siemens'] * 1e6:g}-"
               f"{s['g_max_siemens'] * 1e6:g} uS")
    click.echo(f"  steps/sample   {s['steps_per_sample']} ({s['sequence_length']} + 1 flush per "
               f"layer), {max(s['vmms_per_step'])} VMMs per step"
               + (" (tiles in parallel)" if s["tiles_in_parallel"] else " (one per kernel)")
               + ("" if s["sample_time_s"] is None else
                  f"; {_duration(max(s['step_time_s']))} per step, "
                  f"{_duration(s['sample_time_s'])} per sample at "
                  f"{_duration(s['vmm_time_s'])} per VMM"))
    click.echo(f"  ideal error    {s['ideal_max_abs_error']:.3g} (max |logit| difference, "
               f"{s['probe_sequences']} probe sequences)")
    ranges = ", ".join(f"{max(r) * 1e6:g}" for r in s["tia_range_a"])
    gains = "; ".join(_spread(layer) for layer in s["state_gains"])
    click.echo(f"  loop scales    from {s['scales_from']}, state gains {gains}, TIA ranges "
               f"{ranges} uA")
    if defect_map:
        click.echo(f"  defects        {len(defect_map.stuck)} stuck, "
                   f"{len(s['unavoidable_defects'])} unavoidable, "
                   f"{len(s['repaired_kernels'])} kernels re-fitted around them")
    if s["column_pairs_matched"]:
        click.echo(f"  column pairs   fractional offsets matched to "
                   f"{s['pair_offset_mismatch_codes']['max']:.3f} codes (mean "
                   f"{s['pair_offset_mismatch_codes']['mean']:.3f})")
    for warning in s["warnings"]:
        click.echo(f"  warning: {warning}")
    click.echo("wrote " + ", ".join(map(str, written + ([report] if report else []))))


def _span(array_use: list[dict], key: str) -> str:
    """The range of `key` over the arrays used: "10" or "1-10"."""
    values = [use[key] for use in array_use]
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


def _duration(seconds: float) -> str:
    """A time in the unit that reads best: 190 us, 3.04 ms, 1.2 s."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _spread(gains: list[float]) -> str:
    """One layer's state gains, one per kernel: '1.5' when all are, else '1-3 (median 1.75)'."""
    low, high, median = min(gains), max(gains), statistics.median(gains)
    return f"{low:g}" if low == high else f"{low:g}-{high:g} (median {median:g})"
