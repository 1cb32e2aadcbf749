"""`compile_checkpoint`: a quantized checkpoint + a board profile -> a `Deployment`.

Steps: kernel matrices in levels (mapping) -> tile conductances -> placement on the board
(defect-aware) -> voltage scales from the signal ranges -> loop programs (schedule) -> probe
sequences run through the reference executor on the ideal targets, checked against the
quantized model, and TIA ranges picked from the column currents they produce.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from imssa_hw import reference
from imssa_hw.checkpoint import Checkpoint
from imssa_hw.compiler.artifact import Deployment, Probe
from imssa_hw.compiler.defects import DefectMap
from imssa_hw.compiler.executor import Executor, ideal_vmm, run_layer
from imssa_hw.compiler.mapping import kernel_matrices, tile_conductances, tile_layout
from imssa_hw.compiler.placement import Placement, place
from imssa_hw.compiler.profile import BoardProfile
from imssa_hw.compiler.schedule import Schedule, layer_schedule, state_scales
from imssa_hw.errors import BadInput

PROBE_SEQUENCES = 4
DEFAULT_PROBE_LENGTH = 32
DEFAULT_HEADROOM = 0.9  # the largest known signal uses 90 % of the read voltage


def compile_checkpoint(ckpt: Checkpoint, profile: BoardProfile, defects: DefectMap | None = None,
                       probe_features: np.ndarray | None = None, seed: int = 0,
                       headroom: float = DEFAULT_HEADROOM) -> Deployment:
    """Compile every S4D kernel of `ckpt` for the board of `profile`.

    `probe_features` (B, L, F) are stored with their expected outputs; by default a few seeded
    random sequences of the checkpoint's feature length. Row voltages are scaled so that the
    largest signals of the checkpoint's `meta["signal_ranges"]` (the training set) and of the
    probe sequences reach `headroom` * v_read_max; larger inputs are clipped by the board.
    """
    cfg = ckpt.config
    if not ckpt.quantized:
        raise BadInput("the checkpoint is not quantized (bits None): train with --bits 1..8 "
                       "to deploy on a crossbar")
    if not 0 < headroom <= 1:
        raise BadInput(f"headroom must be in (0, 1], got {headroom}")
    window = profile.conductance
    dg = window.dg(cfg.bits)
    matrices = [kernel_matrices(ckpt.kernels(layer)) for layer in range(cfg.n_layers)]
    layout = tile_layout(cfg.n, profile.differential)
    tile_maps = np.stack([tile_conductances(levels, layout, window, cfg.bits)
                          for m in matrices for levels in m.levels])
    groups = np.repeat(np.arange(cfg.n_layers), cfg.h)
    placement = place(tile_maps, groups, profile.geometry, defects, window.tolerance,
                      window.g_min)
    probe = _probe(ckpt, _probe_features(ckpt, probe_features, seed))
    ranges = _signal_ranges(ckpt, probe.features)
    layers = []
    for layer, m in enumerate(matrices):
        scale = state_scales(m, *ranges[layer], headroom * profile.read.v_read_max)
        tiles = list(placement.tiles[layer * cfg.h:(layer + 1) * cfg.h])
        layers.append(layer_schedule(layer, m, tiles, layout, profile.geometry.rows, dg, scale))
    schedule = Schedule(tuple(layers), profile.read.v_read_max)
    schedule, y_error, peak = _check_on_ideal_targets(schedule, placement.targets, probe, profile)
    executor = Executor.on_maps(schedule, placement.targets)
    logits_error = float(np.abs(reference.forward(ckpt, probe.features, executor)
                                - probe.logits).max())
    summary = _summary(ckpt, profile, dg, placement, schedule, probe, headroom,
                       logits_error, y_error, peak)
    return Deployment(profile, cfg, ckpt.digest, dg, placement, schedule, probe, summary)


def _probe_features(ckpt: Checkpoint, given: np.ndarray | None, seed: int) -> np.ndarray:
    cfg = ckpt.config
    if given is not None:
        given = np.asarray(given, dtype=np.float64)
        if given.ndim != 3 or given.shape[2] != cfg.d_input or 0 in given.shape:
            raise BadInput(f"probe features must be (B, L, {cfg.d_input}), got {given.shape}")
        return given
    length = ckpt.meta.get("features", {}).get("n_frames", DEFAULT_PROBE_LENGTH)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((PROBE_SEQUENCES, int(length), cfg.d_input))


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


def _signal_ranges(ckpt: Checkpoint, features: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer (u_max, x_max) per kernel: the larger of the checkpoint's and the probes'."""
    h, n_layers = ckpt.config.h, ckpt.config.n_layers
    measured = reference.signal_ranges(ckpt, features)
    stored = ckpt.meta.get("signal_ranges")
    if stored is None:
        stored = measured
    elif not (isinstance(stored, list) and len(stored) == n_layers and all(
            isinstance(r, dict) and all(len(r.get(k, [])) == h for k in ("u_max", "x_max"))
            for r in stored)):
        raise BadInput(f"checkpoint meta signal_ranges must list {n_layers} layers of u_max and "
                       f"x_max with {h} entries each")
    return [(np.maximum(np.asarray(s["u_max"], float), m["u_max"]),
             np.maximum(np.asarray(s["x_max"], float), m["x_max"]))
            for s, m in zip(stored, measured)]


def _check_on_ideal_targets(schedule: Schedule, targets: np.ndarray, probe: Probe,
                            profile: BoardProfile) -> tuple[Schedule, float, float]:
    """Run each layer on its probe input; set TIA ranges from the largest column currents.

    Returns the schedule with TIA ranges, the largest |y| error and the largest current (A).
    """
    ideal = ideal_vmm(targets)
    ranges = np.asarray(profile.read.tia_ranges)
    layers, y_error, overall = [], 0.0, 0.0
    for layer, u, y in zip(schedule.layers, probe.u, probe.y):
        peaks: dict[int, float] = {}

        def recording(array: int, v: np.ndarray) -> np.ndarray:
            currents = ideal(array, v)
            peaks[array] = max(peaks.get(array, 0.0), float(np.abs(currents).max()))
            return currents
        raw = run_layer(layer, u, recording, schedule.v_read_max)
        y_error = max(y_error, float(np.abs(layer.ssm_output(raw) - y).max()))
        tia = [ranges[min(np.searchsorted(ranges, peaks[p.array]), len(ranges) - 1)]
               for p in layer.programs]
        layers.append(replace(layer, tia_range_a=np.asarray(tia)))
        overall = max(overall, *peaks.values())
    return replace(schedule, layers=tuple(layers)), y_error, overall


def _summary(ckpt: Checkpoint, profile: BoardProfile, dg: float, placement: Placement,
             schedule: Schedule, probe: Probe, headroom: float, logits_error: float,
             y_error: float, peak: float) -> dict:
    cfg, geo = ckpt.config, profile.geometry
    tile_rows, tile_cols = placement.tiles[0].rows.size, placement.tiles[0].cols.size
    cells_used = len(placement.tiles) * tile_rows * tile_cols
    length = probe.features.shape[1]
    warnings = []
    if peak > profile.read.tia_ranges[-1]:
        warnings.append(f"column currents reach {peak:.3g} A, above the largest TIA range "
                        f"{profile.read.tia_ranges[-1]:.3g} A")
    if placement.conflicts:
        warnings.append(f"{len(placement.conflicts)} stuck devices sit on cells that matter "
                        f"and miss their targets")
    return {
        "model_digest": ckpt.digest, "profile": profile.name, "layers": cfg.n_layers,
        "kernels": cfg.n_layers * cfg.h, "state_size": cfg.n, "bits": cfg.bits,
        "levels_per_device": 2**cfg.bits, "signed_levels": 2 * (2**cfg.bits - 1) + 1,
        "dg_s": dg, "g_min_s": profile.conductance.g_min, "g_max_s": profile.conductance.g_max,
        "differential": profile.differential, "tile_rows": tile_rows, "tile_cols": tile_cols,
        "kernels_per_array": placement.kernels_per_array, "arrays": geo.arrays,
        "arrays_used": placement.arrays_used, "cells_used": cells_used,
        "cells_that_matter": int(placement.used.sum()),
        "utilization": cells_used / (placement.arrays_used * geo.rows * geo.cols),
        "headroom": headroom, "sequence_length": length,
        "steps_per_sample": schedule.steps_per_sample(length),
        "probe_sequences": probe.features.shape[0],
        "ideal_max_abs_error": logits_error, "ideal_max_abs_error_y": y_error,
        "max_column_current_a": peak,
        "tia_range_a": [layer.tia_range_a.tolist() for layer in schedule.layers],
        "stuck_in_use_before_permutation": placement.stuck_in_use,
        "unavoidable_defects": [c.to_dict() for c in placement.conflicts],
        "warnings": warnings,
    }
