"""`compile_checkpoint`: a quantized checkpoint + a board profile -> a `Deployment`.

Steps: kernel matrices in levels (`model.mapping`) -> tile conductances -> placement on the board
(defect-aware) -> kernels re-fitted around the stuck devices placement could not avoid
(`repair`) -> state scales and TIA ranges (`model.loop_scales`: the ones the model was trained
with when its checkpoint holds them for this board, else measured on the probe sequences and
the stored signal ranges) -> loop programs (schedule) -> probe sequences run through the
reference executor on the ideal targets and checked against the quantized model.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from imssa_hw.board.params import max_level
from imssa_hw.board.profile import BoardProfile, Differential
from imssa_hw.compiler.artifact import Deployment, Probe
from imssa_hw.compiler.defects import DefectMap
from imssa_hw.compiler.executor import Executor, ideal_vmm, run_layer
from imssa_hw.compiler.placement import Placement, PlacementMode, array_capacity, place
from imssa_hw.compiler.repair import KernelRepair, repair
from imssa_hw.compiler.schedule import Schedule, layer_schedule
from imssa_hw.errors import BadInput
from imssa_hw.model import reference
from imssa_hw.model.checkpoint import Checkpoint
from imssa_hw.model.loop_scales import (DEFAULT_HEADROOM, LayerScales, feedback_deadband_v,
                                        kernel_tiles, layer_matrices, layer_scales, measure,
                                        stored_scales)
from imssa_hw.model.mapping import KernelMatrices, tile_layout

PROBE_SEQUENCES = 4
DEFAULT_PROBE_LENGTH = 32


def compile_checkpoint(ckpt: Checkpoint, profile: BoardProfile, defects: DefectMap | None = None,
                       probe_features: np.ndarray | None = None, seed: int = 0,
                       headroom: float = DEFAULT_HEADROOM,
                       column_offsets_codes: np.ndarray | None = None,
                       parallel: bool = False,
                       placement: PlacementMode | str = PlacementMode.AUTO,
                       repair_defects: bool = True) -> Deployment:
    """Compile every S4D kernel of `ckpt` for the board of `profile`.

    `placement`: how tiles share an array (compiler/placement.py): `diagonal` (no shared rows
    or columns), `dense` (a grid of tiles, one kernel per VMM only) or `auto` (diagonal when it
    fits the board, else dense).

    `column_offsets_codes` (arrays, cols), the columns' TIA offsets in ADC codes from a
    calibration (`Calibration.offset_codes`): the two columns of every differential pair are
    then placed on columns with the same fractional offset (compiler/placement.py).
    `parallel`: one VMM per array runs all its tiles of a layer (fewer VMMs per step, but the
    off cells between tiles add their errors); by default each kernel's tile runs alone.
    `repair_defects`: re-fit the kernels whose tiles hold stuck devices that placement could not
    avoid (compiler/repair.py); False leaves them as placed (to measure what repair gains).

    `probe_features` (B, L, F) are stored with their expected outputs; by default a few seeded
    random sequences of the checkpoint's feature length. The scales are the trained ones
    (`meta["loop_scales"]`, chosen on the training set for this board); without them, rows are
    scaled so that the largest signals of `meta["signal_ranges"]` and of the probes reach
    `headroom` * v_read_max, and each layer's TIA range holds its probe currents over
    `headroom`. Larger signals are clipped by the board.
    """
    cfg = ckpt.config
    if not ckpt.quantized:
        raise BadInput("the checkpoint is not quantized (bits None): train with --bits 1..8 "
                       "to deploy on a crossbar")
    if not 0 < headroom <= 1:
        raise BadInput(f"headroom must be in (0, 1], got {headroom}")
    window = profile.conductance
    dg_siemens = window.dg(cfg.bits)
    matrices = layer_matrices(ckpt)
    layout = tile_layout(cfg.n, profile.differential)
    tile_maps_siemens = np.concatenate([kernel_tiles(m, profile, cfg.bits) for m in matrices])
    groups = np.repeat(np.arange(cfg.n_layers), cfg.h)
    if column_offsets_codes is not None:
        column_offsets_codes = np.asarray(column_offsets_codes, dtype=float)
        expected = (profile.geometry.arrays, profile.geometry.cols)
        if column_offsets_codes.shape != expected:
            raise BadInput(f"column offsets for {column_offsets_codes.shape}, the board has "
                           f"{expected[0]} arrays of {expected[1]} columns")
    pairs = np.stack([layout.out_plus, layout.out_minus], axis=1)
    pairs = pairs[pairs[:, 1] >= 0] if profile.differential is Differential.COLUMNS else None
    try:
        placed = place(tile_maps_siemens, groups, profile.geometry, defects,
                       window.tolerance_siemens, window.g_min_siemens, pairs,
                       column_offsets_codes, parallel, placement)
    except BadInput as exc:
        raise BadInput(f"{exc}{_what_fits(cfg, profile, layout.shape, parallel)}") from None
    repairs: tuple[KernelRepair, ...] = ()
    if repair_defects and defects is not None and placed.conflicts:
        targets_siemens, repairs = repair(placed, defects, matrices, layout, window, cfg.bits,
                                          _sequence_length(ckpt))
        placed = replace(placed, targets_siemens=targets_siemens)
    probe = _probe(ckpt, _probe_features(ckpt, probe_features, seed))
    scales = stored_scales(ckpt, profile, headroom)
    scales_from = "training" if scales is not None else "probes"
    if scales is None:
        scales = _measured_scales(ckpt, matrices, probe.features, profile, headroom)
    layers = []
    for layer, (m, scale) in enumerate(zip(matrices, scales)):
        tiles = list(placed.tiles[layer * cfg.h:(layer + 1) * cfg.h])
        layers.append(layer_schedule(layer, m, tiles, layout, profile.geometry.rows, dg_siemens,
                                     scale.state_scale_v, scale.tia_range_a,
                                     feedback_deadband_v(profile), parallel))
    schedule = Schedule(tuple(layers), profile.read.v_read_max)
    y_error, peaks = _check_on_ideal_targets(schedule, placed.targets_siemens, probe)
    executor = Executor.on_maps(schedule, placed.targets_siemens)
    logits_error = float(np.abs(reference.forward(ckpt, probe.features, executor)
                                - probe.logits).max())
    summary = {**_summary(ckpt, profile, dg_siemens, placed, schedule, probe, headroom,
                          logits_error, y_error, peaks, scales, scales_from, parallel, repairs),
               "state_gains": [scale.state_gain.tolist() for scale in scales]}
    return Deployment(profile, cfg, ckpt.digest, dg_siemens, placed, schedule, probe, summary)


def _what_fits(cfg, profile: BoardProfile, tile_shape: tuple[int, int], parallel: bool) -> str:
    """A hint for a model that does not fit: the most kernels per layer the board holds with
    this state size and layer count (densely unless the tiles run in parallel)."""
    mode = PlacementMode.DIAGONAL if parallel else PlacementMode.DENSE
    tiles = array_capacity(mode, profile.geometry, tile_shape) * profile.geometry.arrays
    h = tiles // cfg.n_layers
    if h < 1:
        return ""
    return (f". {profile.name} holds {tiles} tiles of {tile_shape[0]}x{tile_shape[1]} "
            f"({mode}): with N={cfg.n} and {cfg.n_layers} layer(s), at most {h} kernels per "
            f"layer (this model has {cfg.h}; train with --h {h} or fewer)")


def _probe_features(ckpt: Checkpoint, given: np.ndarray | None, seed: int) -> np.ndarray:
    cfg = ckpt.config
    if given is not None:
        given = np.asarray(given, dtype=np.float64)
        if given.ndim != 3 or given.shape[2] != cfg.d_input or 0 in given.shape:
            raise BadInput(f"probe features must be (B, L, {cfg.d_input}), got {given.shape}")
        return given
    rng = np.random.default_rng(seed)
    return rng.standard_normal((PROBE_SEQUENCES, _sequence_length(ckpt), cfg.d_input))


def _sequence_length(ckpt: Checkpoint) -> int:
    """The model's sequence length (frames), DEFAULT_PROBE_LENGTH when the checkpoint has none."""
    return int(ckpt.meta.get("features", {}).get("n_frames", DEFAULT_PROBE_LENGTH))


def _probe(ckpt: Checkpoint, features: np.ndarray) -> Probe:
    """Run the quantized model on the probes, keeping each layer's crossbar input and output."""
    us, ys = [], []

    def recording(layer: int, u: np.ndarray) -> np.ndarray:
        y = reference.ideal_recurrence(ckpt.kernels(layer), u)
        us.append(u)
        ys.append(y)
        return y
    logits = reference.forward(ckpt, features, recording)
    return Probe(features, logits, tuple(us), tuple(ys))


def _measured_scales(ckpt: Checkpoint, matrices: list[KernelMatrices], features: np.ndarray,
                     profile: BoardProfile, headroom: float) -> list[LayerScales]:
    """Scales from the probes' signals, widened to the checkpoint's stored signal ranges."""
    h, n_layers = ckpt.config.h, ckpt.config.n_layers
    measured = measure(ckpt, matrices, features, profile)
    stored = ckpt.meta.get("signal_ranges")
    if stored is not None and not (isinstance(stored, list) and len(stored) == n_layers and all(
            isinstance(r, dict) and all(len(r.get(k, [])) == h for k in ("u_max", "x_max"))
            for r in stored)):
        raise BadInput(f"checkpoint meta signal_ranges must list {n_layers} layers of u_max and "
                       f"x_max with {h} entries each")
    if stored is not None:
        measured = [replace(m, u_max=np.maximum(np.asarray(s["u_max"], float), m.u_max),
                            x_max=np.maximum(np.asarray(s["x_max"], float), m.x_max))
                    for s, m in zip(stored, measured)]
    return [layer_scales(m, signals, profile, ckpt.config.bits, headroom)
            for m, signals in zip(matrices, measured)]


def _check_on_ideal_targets(schedule: Schedule, targets_siemens: np.ndarray, probe: Probe
                            ) -> tuple[float, list[float]]:
    """Run each layer on its probe input: the largest |y| error, and per layer the largest
    column current (A)."""
    ideal = ideal_vmm(targets_siemens)
    y_error, peaks = 0.0, []
    for layer, u, y in zip(schedule.layers, probe.u, probe.y):
        peak = 0.0

        def recording(array: int, v: np.ndarray) -> np.ndarray:
            nonlocal peak
            currents = ideal(array, v)
            peak = max(peak, float(np.abs(currents).max()))
            return currents
        raw = run_layer(layer, u, recording, schedule.v_read_max, dac_rounds=False)
        y_error = max(y_error, float(np.abs(layer.ssm_output(raw) - y).max()))
        peaks.append(peak)
    return y_error, peaks


def _summary(ckpt: Checkpoint, profile: BoardProfile, dg_siemens: float, placement: Placement,
             schedule: Schedule, probe: Probe, headroom: float, logits_error: float,
             y_error: float, peaks: list[float], scales: list[LayerScales], scales_from: str,
             parallel: bool, repairs: tuple[KernelRepair, ...]) -> dict:
    cfg, geo = ckpt.config, profile.geometry
    tile_rows, tile_cols = placement.tiles[0].rows.size, placement.tiles[0].cols.size
    cells_used = len(placement.tiles) * tile_rows * tile_cols
    cells_that_matter = int(placement.used.sum())
    arrays = sorted({t.array for t in placement.tiles})
    on = {a: [t for t in placement.tiles if t.array == a] for a in arrays}
    array_use = [{"array": a, "tiles": len(on[a]),
                  "spare_rows": geo.rows - len(np.unique(np.concatenate([t.rows for t in on[a]]))),
                  "spare_cols": geo.cols - len(np.unique(np.concatenate([t.cols for t in on[a]])))}
                 for a in arrays]
    length = probe.features.shape[1]
    vmms = [len(layer.programs) for layer in schedule.layers]
    steps_per_layer = schedule.steps_per_sample(length) // len(vmms)
    warnings = []
    for layer, peak, scale in zip(schedule.layers, peaks, scales):
        if peak > layer.tia_range_a[0]:
            why = ("; the state gains fitted in training accept that for the rarest states"
                   if scale.state_gain.max() > 1 else "")
            warnings.append(f"layer {layer.layer}: probe column currents reach {peak:.3g} A, "
                            f"above its TIA range {layer.tia_range_a[0]:.3g} A (they clip{why})")
    if placement.conflicts:
        repaired = (f"; {len(repairs)} kernels re-fitted around them (impulse-response error "
                    f"at most {max(r.error_after for r in repairs):.3g}, "
                    f"{max(r.error_before for r in repairs):.3g} unrepaired)" if repairs else "")
        warnings.append(f"{len(placement.conflicts)} stuck devices sit on cells that matter "
                        f"and miss their targets{repaired}")
    return {
        "model_digest": ckpt.digest, "profile": profile.name, "layers": cfg.n_layers,
        "kernels": cfg.n_layers * cfg.h, "state_size": cfg.n, "bits": cfg.bits,
        "levels_per_device": max_level(cfg.bits) + 1, "signed_levels": 2 * max_level(cfg.bits) + 1,
        "dg_siemens": dg_siemens, "g_min_siemens": profile.conductance.g_min_siemens,
        "g_max_siemens": profile.conductance.g_max_siemens,
        "differential": profile.differential, "tile_rows": tile_rows, "tile_cols": tile_cols,
        "placement": placement.mode, "kernels_per_array": placement.kernels_per_array,
        "arrays": geo.arrays, "arrays_used": placement.arrays_used,
        "tiles_per_array": [use["tiles"] for use in array_use], "array_use": array_use,
        "cells_used": cells_used, "cells_that_matter": cells_that_matter,
        "utilization": cells_that_matter / (placement.arrays_used * geo.rows * geo.cols),
        "headroom": headroom, "sequence_length": length,
        "steps_per_sample": schedule.steps_per_sample(length),
        "probe_sequences": probe.features.shape[0],
        "ideal_max_abs_error": logits_error, "ideal_max_abs_error_y": y_error,
        "max_column_current_a": max(peaks), "probe_peak_current_a": peaks,
        "scales_from": scales_from,
        "tia_range_a": [layer.tia_range_a.tolist() for layer in schedule.layers],
        "stuck_in_use_before_permutation": placement.stuck_in_use,
        "unavoidable_defects": [c.to_dict() for c in placement.conflicts],
        "repaired_kernels": [r.to_dict() for r in repairs],
        "tiles_in_parallel": parallel,
        "vmms_per_step": vmms,
        "vmm_time_s": profile.timing.vmm_time_s or None,
        "step_time_s": [profile.timing.step_time_s(v) for v in vmms],
        "sample_time_s": (None if not profile.timing.vmm_time_s else  # layers run in turn
                          steps_per_layer * profile.timing.step_time_s(sum(vmms))),
        "column_pairs_matched": placement.pair_mismatch_codes is not None,
        "pair_offset_mismatch_codes": None if placement.pair_mismatch_codes is None else {
            "mean": round(float(placement.pair_mismatch_codes.mean()), 4),
            "max": round(float(placement.pair_mismatch_codes.max()), 4)},
        "warnings": warnings,
    }
