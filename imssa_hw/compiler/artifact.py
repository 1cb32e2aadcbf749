"""The deploy directory: `deploy.json` (everything small, readable) + `targets.npz` (the maps).

deploy.json: format and version, the model (checkpoint digest and config), the board profile,
the mapping (bits, dG, window), the placement (mode, tiles, unavoidable defects), the schedule
(loop programs per layer as plain arrays, scales, delay, execution modes), the compile summary,
and the SHA-256 of targets.npz. targets.npz (numpy, no pickle): `targets_siemens` and `used` (arrays, rows,
cols), the probe sequences `probe_features` and their expected `probe_logits`, and per layer
`probe_u_{l}` (the layer's crossbar input) and `probe_y_{l}` (its SSM output without D*u).

Tile t holds kernel (layer t // H, channel t % H).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imssa_hw.board.profile import BoardProfile, profile_from_dict
from imssa_hw.compiler.placement import Conflict, Placement, PlacementMode, TilePlace
from imssa_hw.compiler.schedule import Schedule
from imssa_hw.errors import BadInput
from imssa_hw.files import atomic_path, read_json, read_npz, write_json, write_npz
from imssa_hw.model.checkpoint import CHECKPOINT_FILE  # a deploy folder's copy of the model
from imssa_hw.model.config import ModelConfig
from imssa_hw.model.mapping import tile_layout

if TYPE_CHECKING:
    from imssa_hw.drivers.messages import BoardInfo

FORMAT = "imssa-hw-deploy"
VERSION = 1
DEPLOY_JSON = "deploy.json"
TARGETS_NPZ = "targets.npz"


@dataclass(frozen=True)
class Probe:
    """Probe sequences and what the quantized model computes on them."""

    features: np.ndarray  # (B, L, F)
    logits: np.ndarray  # (B, classes)
    u: tuple[np.ndarray, ...]  # per layer (B, L, H): the layer's crossbar input
    y: tuple[np.ndarray, ...]  # per layer (B, L, H): its SSM output without D*u


@dataclass(frozen=True)
class Deployment:
    """A compiled model: what to program (placement.targets_siemens / .used) and how to run it."""

    profile: BoardProfile
    config: ModelConfig
    model_digest: str
    dg_siemens: float  # S per level
    placement: Placement
    schedule: Schedule
    probe: Probe
    summary: dict

    @property
    def targets_siemens(self) -> np.ndarray:
        """Target conductances (arrays, rows, cols) in S; cells that do not matter are off."""
        return self.placement.targets_siemens

    @property
    def used(self) -> np.ndarray:
        """(arrays, rows, cols) bool: the cells that matter (program to target precisely)."""
        return self.placement.used

    def check_board(self, info: BoardInfo) -> None:
        """BadInput, one line naming every misfit, unless the board (its `BoardInfo`) fits this
        deployment (`BoardProfile.check_board`, with the TIA ranges its layers use): the one
        check programming, inference and the budget make."""
        self.profile.check_board(info.spec, info.board_id,
                                 [layer.vmm_range_a for layer in self.schedule.layers])


def save_deployment(deployment: Deployment, out_dir: str | Path) -> Path:
    """Write deploy.json and targets.npz into `out_dir` (each file atomically; the JSON last)."""
    out_dir = Path(out_dir)
    arrays = {"targets_siemens": deployment.targets_siemens, "used": deployment.used,
              "probe_features": deployment.probe.features, "probe_logits": deployment.probe.logits}
    for layer, (u, y) in enumerate(zip(deployment.probe.u, deployment.probe.y)):
        arrays[f"probe_u_{layer}"], arrays[f"probe_y_{layer}"] = u, y
    npz = out_dir / TARGETS_NPZ
    write_npz(npz, arrays, compressed=True)
    digest = _sha256(npz)
    p = deployment.placement
    h = deployment.config.h
    data = {
        "format": FORMAT, "version": VERSION,
        "model": {"digest": deployment.model_digest, "config": deployment.config.to_dict()},
        "profile": deployment.profile.to_dict(),
        "mapping": {"dg_siemens": deployment.dg_siemens,
                    "differential": deployment.profile.differential},
        "placement": {
            "mode": p.mode, "kernels_per_array": p.kernels_per_array,
            "stuck_in_use": p.stuck_in_use,
            "tiles": [{"tile": t, "layer": t // h, "channel": t % h, "array": tile.array,
                       "rows": tile.rows.tolist(), "cols": tile.cols.tolist()}
                      for t, tile in enumerate(p.tiles)],
            "conflicts": [c.to_dict() for c in p.conflicts]},
        "schedule": deployment.schedule.to_dict(),
        "summary": deployment.summary,
        "targets": {"file": TARGETS_NPZ, "sha256": digest},
    }
    write_json(out_dir / DEPLOY_JSON, data)
    return out_dir


def copy_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Copy the checkpoint into the deploy directory (atomically) as CHECKPOINT_FILE."""
    target = Path(out_dir) / CHECKPOINT_FILE
    if Path(checkpoint).resolve() != target.resolve():
        with atomic_path(target) as tmp:
            shutil.copyfile(checkpoint, tmp)
    return target


def load_deployment(path: str | Path) -> Deployment:
    """Load and validate a deploy directory (or its deploy.json); problems are `BadInput`."""
    path = Path(path)
    folder = path.parent if path.name == DEPLOY_JSON else path
    meta_path = folder / DEPLOY_JSON
    if not meta_path.is_file():
        raise BadInput(f"not a deploy directory: {meta_path} not found")
    data = read_json(meta_path, "not a deploy directory")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadInput(f"{meta_path}: not an imssa-hw deployment (format "
                       f"{data.get('format') if isinstance(data, dict) else None!r})")
    if data.get("version") != VERSION:
        raise BadInput(f"{meta_path}: deployment version {data.get('version')!r} is not supported "
                       f"(this imssa-hw reads version {VERSION}); compile again")
    where = str(meta_path)
    for key in ("model", "profile", "mapping", "placement", "schedule", "summary", "targets"):
        if not isinstance(data.get(key), dict):
            raise BadInput(f"{where}: missing section {key!r}")
    profile = profile_from_dict(data["profile"], f"{where}: profile")
    try:
        config = ModelConfig.from_dict(data["model"]["config"])
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{where}: bad model config ({exc})") from None
    digest = data["model"].get("digest")
    dg_siemens = data["mapping"].get("dg_siemens")
    if not isinstance(digest, str) or not digest:
        raise BadInput(f"{where}: model digest missing")
    if not isinstance(dg_siemens, float) or not 0 < dg_siemens < profile.conductance.g_max_siemens:
        raise BadInput(f"{where}: mapping.dg_siemens must be a conductance step in S, got "
                       f"{dg_siemens!r}")
    shape = profile.geometry.shape
    schedule = Schedule.from_dict(data["schedule"], shape, config.h, config.n_layers,
                                  f"{where}: schedule")
    if schedule.v_read_max > profile.read.v_read_max:
        raise BadInput(f"{where}: schedule.v_read_max {schedule.v_read_max} V exceeds the "
                       f"profile's {profile.read.v_read_max} V")
    arrays = _load_arrays(folder, data["targets"], where)
    targets, used = arrays.get("targets_siemens"), arrays.get("used")
    _expect(targets, shape, np.floating, "targets_siemens")
    _expect(used, shape, np.bool_, "used")
    if not np.isfinite(targets).all() or (targets < 0).any():
        raise BadInput(f"{folder / TARGETS_NPZ}: targets_siemens must be finite conductances >= 0")
    probe = _probe(arrays, config)
    tile_shape = tile_layout(config.n, profile.differential).shape
    placement = _placement(data["placement"], config, tile_shape, targets, used, shape, where)
    return Deployment(profile, config, digest, dg_siemens, placement, schedule, probe,
                      data["summary"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_arrays(folder: Path, entry: dict, where: str) -> dict[str, np.ndarray]:
    npz = folder / TARGETS_NPZ
    if not npz.is_file():
        raise BadInput(f"{npz} not found (deploy.json needs it)")
    if _sha256(npz) != entry.get("sha256"):
        raise BadInput(f"{npz} does not match {where} (sha256 differs: the files come from "
                       f"different compiles or were modified)")
    return read_npz(npz, "deployment targets")


def _expect(array: np.ndarray | None, shape: tuple, kind: type, name: str) -> None:
    if array is None:
        raise BadInput(f"{TARGETS_NPZ}: missing array {name}")
    if tuple(array.shape) != tuple(shape) or not np.issubdtype(array.dtype, kind):
        raise BadInput(f"{TARGETS_NPZ}: {name} has shape {tuple(array.shape)} ({array.dtype}), "
                       f"expected {tuple(shape)} ({kind.__name__})")


def _probe(arrays: dict[str, np.ndarray], config: ModelConfig) -> Probe:
    features = arrays.get("probe_features")
    if features is None or features.ndim != 3 or features.shape[2] != config.d_input:
        raise BadInput(f"{TARGETS_NPZ}: probe_features must be (B, L, {config.d_input})")
    batch, length, _ = features.shape
    _expect(arrays.get("probe_logits"), (batch, config.n_classes), np.floating, "probe_logits")
    us, ys = [], []
    for layer in range(config.n_layers):
        for name, store in ((f"probe_u_{layer}", us), (f"probe_y_{layer}", ys)):
            _expect(arrays.get(name), (batch, length, config.h), np.floating, name)
            store.append(arrays[name])
    return Probe(features, arrays["probe_logits"], tuple(us), tuple(ys))


def _placement(data: dict, config: ModelConfig, tile_shape: tuple[int, int], targets: np.ndarray,
               used: np.ndarray, shape: tuple[int, int, int], where: str) -> Placement:
    tiles_data = data.get("tiles")
    n_tiles = config.n_layers * config.h
    if not isinstance(tiles_data, list) or len(tiles_data) != n_tiles:
        raise BadInput(f"{where}: placement.tiles must list {n_tiles} tiles (layers x H)")
    tiles = []
    for i, t in enumerate(tiles_data):
        try:
            array, rows, cols = int(t["array"]), np.asarray(t["rows"], np.int64), \
                np.asarray(t["cols"], np.int64)
        except (KeyError, TypeError, ValueError):
            raise BadInput(f"{where}: placement.tiles[{i}] needs array, rows and cols") from None
        if (rows.shape, cols.shape) != ((tile_shape[0],), (tile_shape[1],)):
            raise BadInput(f"{where}: placement.tiles[{i}] must have {tile_shape[0]} rows and "
                           f"{tile_shape[1]} cols (a kernel tile)")
        if not (0 <= array < shape[0] and ((rows >= 0) & (rows < shape[1])).all()
                and ((cols >= 0) & (cols < shape[2])).all()):
            raise BadInput(f"{where}: placement.tiles[{i}] lies outside the board {shape}")
        tiles.append(TilePlace(array, rows, cols))
    mode = data.get("mode", PlacementMode.DIAGONAL)  # deployments from before dense placement
    if mode not in (PlacementMode.DIAGONAL, PlacementMode.DENSE):
        raise BadInput(f"{where}: placement.mode must be diagonal or dense, got {mode!r}")
    mode = PlacementMode(mode)
    _check_apart(tiles, mode, shape, where)
    try:
        conflicts = tuple(Conflict(int(c["array"]), int(c["row"]), int(c["col"]), c["g_siemens"],
                                   float(c["target_siemens"]), int(c["tile"]))
                          for c in data.get("conflicts", []))
        per_array, stuck = int(data["kernels_per_array"]), int(data["stuck_in_use"])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"{where}: malformed placement (kernels_per_array, stuck_in_use, "
                       f"conflicts)") from None
    return Placement(tuple(tiles), mode, per_array, targets, used, conflicts, stuck)


def _check_apart(tiles: list[TilePlace], mode: PlacementMode, shape: tuple[int, int, int],
                 where: str) -> None:
    """BadInput unless no two tiles share a cell (dense) or a row or column (diagonal)."""
    rows, cols, cells = (np.zeros(shape[:2], int), np.zeros(shape[::2], int),
                         np.zeros(shape, int))
    for tile in tiles:
        np.add.at(rows[tile.array], tile.rows, 1)
        np.add.at(cols[tile.array], tile.cols, 1)
        np.add.at(cells[tile.array], np.ix_(tile.rows, tile.cols), 1)
    dense = mode is PlacementMode.DENSE
    clash = (cells > 1).any() if dense else ((rows > 1).any() or (cols > 1).any())
    if clash:
        what = "a cell" if dense else "a row or column"
        raise BadInput(f"{where}: placement.tiles overlap ({mode} placement: two tiles share "
                       f"{what})")
