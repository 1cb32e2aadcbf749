"""The feedback-delay schedule: per time step, what drives each row and what the columns mean.

Per layer, each kernel's tile runs its own `LoopProgram` (the same fields as the board's
on-board loop program), driving only the tile's rows and reading only its columns: the other
rows of its array stay at 0 V, so no other cell adds current to the columns it reads (with
dense placement the other tiles of its row band do carry current, into columns it does not
read) and the kernels cannot disturb each other (one kernel per VMM, as the paper runs one
kernel per crossbar). `parallel` instead runs one program per array, all its tiles at once
(diagonal placement only): fewer VMMs per step, but every off device between the tiles adds
its error to the columns. At step t, in program order:

    V[row]   = row_input_gain_v[row] * u_t[row_input[row]]
             + shrink(row_feedback_gain_v_per_a[row] * out_{t-1}[row_feedback[row]])   (0 at t = 0)
    V        = clip(V, -v_read_max, v_read_max)
    I        = G^T V                      (column currents of the array)
    out_t[k] = I[out_plus[k]] - I[out_minus[k]]   (out_minus -1: single-ended)

Per kernel the program's outputs are its state x_t (fed back to the state rows on the next
step) and y_{t-1} (it leaves the array). shrink moves a fed-back voltage toward zero by
`feedback_deadband_v`, `loop_scales.FEEDBACK_DEADBAND_STEPS` of a row-DAC step: the DAC then
rounds a state worth just over half a step to zero, so small states decay as in the model
instead of sticking at one step when a column's gain error tips them over the tie.

Scales: the state rows carry V = s_x * x with the state scale s_x (V per unit); the u row then
needs s_x * b_step / a_step volts per unit of u, the state column currents are
x_t * s_x * dG / a_step, so the feedback gain is a_step / dG (V/A, independent of s_x), and
y = I * 2 c_step / (dG * s_x). s_x and the layer's TIA range come from `model.loop_scales`.

The output lags one step: y_t is read at step t + 1, so a sequence of L steps runs L + 1 steps
(one flush step with u = 0). D*u stays digital and is added to y_t with u_t (same t). Layers run
one after another, each for the whole sequence, with the digital parts (GELU, mixing, residual,
norm) on the host in between.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from imssa_hw.board.tables import Field
from imssa_hw.compiler.placement import TilePlace
from imssa_hw.drivers.loop_program import PROGRAM_FIELDS, LoopProgram
from imssa_hw.errors import BadInput
from imssa_hw.model.mapping import KernelMatrices, TileLayout

OUTPUT_DELAY = 1
FLUSH_STEPS = 1
MODES = {
    "host_loop": "every step, for each array in order: the host computes the row voltages from "
                 "the program (its inputs and the previous step's outputs), applies them, runs "
                 "one VMM and reads the column currents",
    "on_board_loop": "per layer: upload each array's program and the layer input (L x H); the "
                     "board runs the L + 1 steps with its own column-to-row feedback and returns "
                     "the outputs ((L + 1) x outputs, concatenated over the arrays in order)",
}


OPTIONAL = {"feedback_deadband_v": 0.0}
"""Program fields a deployment may leave out (compiled before they existed), with their value then."""


def program_from_dict(data: dict, shape: tuple[int, int, int], where: str) -> LoopProgram:
    """A stored loop program, checked against a board of `shape` (arrays, rows, cols)."""
    if not isinstance(data, dict):
        raise BadInput(f"{where}: a program must be an object")
    missing = [name for name in PROGRAM_FIELDS if name not in data and name not in OPTIONAL]
    if missing:
        raise BadInput(f"{where}: missing {', '.join(missing)}")
    arrays, rows, cols = shape
    values = {"array": _integer(data["array"], 0, arrays - 1, f"{where}.array")}
    for name in ("row_input", "row_feedback", "out_plus", "out_minus"):
        values[name] = _vector(data[name], np.int64, f"{where}.{name}")
    for name in ("row_input_gain_v", "row_feedback_gain_v_per_a"):
        values[name] = _vector(data[name], np.float64, f"{where}.{name}")
    deadband = data.get("feedback_deadband_v", OPTIONAL["feedback_deadband_v"])
    if not isinstance(deadband, (int, float)) or isinstance(deadband, bool):
        raise BadInput(f"{where}.feedback_deadband_v must be a number, got {deadband!r}")
    values["feedback_deadband_v"] = float(deadband)
    n_out = len(values["out_plus"])
    checks = [
        (all(len(values[n]) == rows for n in ("row_input", "row_input_gain_v", "row_feedback",
                                             "row_feedback_gain_v_per_a")),
         f"the row fields must have {rows} entries (the board's rows)"),
        (len(values["out_minus"]) == n_out, "out_plus and out_minus differ in length"),
        (((values["out_plus"] >= 0) & (values["out_plus"] < cols)).all(),
         f"out_plus must name columns 0..{cols - 1}"),
        (((values["out_minus"] >= -1) & (values["out_minus"] < cols)).all(),
         f"out_minus must name columns 0..{cols - 1} or -1"),
        ((values["row_input"] >= -1).all(), "row_input must be >= -1"),
        (((values["row_feedback"] >= -1) & (values["row_feedback"] < n_out)).all(),
         f"row_feedback must name outputs 0..{n_out - 1} or -1"),
    ]
    for ok, message in checks:
        if not ok:
            raise BadInput(f"{where}: {message}")
    try:
        return LoopProgram(**values)
    except ValueError as exc:
        raise BadInput(f"{where}: {exc}") from None


@dataclass(frozen=True)
class LayerSchedule:
    """One layer: its programs in operation order and how to read the kernels' y from them."""

    layer: int
    programs: tuple[LoopProgram, ...]
    y_output: np.ndarray  # int (H,): index of kernel h's y in the concatenated outputs
    y_scale: np.ndarray  # (H,) model units per A
    d: np.ndarray  # (H,) digital feed-through, y_t += d * u_t
    state_scale_v: np.ndarray  # (H,) V per unit of state
    tia_range_a: np.ndarray  # (programs,) TIA full scale per program (A)

    @property
    def order(self) -> list[int]:
        """Arrays in the order they operate within a step."""
        return [p.array for p in self.programs]

    @property
    def vmm_range_a(self) -> float:
        """The board's ADC full scale while this layer runs (A): its programs' widest TIA range
        (the compiler gives them all the layer's)."""
        return float(np.max(self.tia_range_a))

    def ssm_output(self, raw: np.ndarray) -> np.ndarray:
        """Raw outputs (B, L + flush, outputs) in A -> y (B, L, H) aligned with u, without D*u."""
        length = raw.shape[1] - FLUSH_STEPS
        return raw[:, OUTPUT_DELAY:OUTPUT_DELAY + length, self.y_output] * self.y_scale

    def to_dict(self) -> dict:
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        out["programs"] = [p.to_dict() for p in self.programs]
        return out

    @classmethod
    def from_dict(cls, data: dict, shape: tuple[int, int, int], h: int,
                  where: str) -> "LayerSchedule":
        if not isinstance(data, dict):
            raise BadInput(f"{where}: a layer schedule must be an object")
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise BadInput(f"{where}: missing {', '.join(missing)}")
        if not isinstance(data["programs"], list) or not data["programs"]:
            raise BadInput(f"{where}.programs must be a non-empty list")
        programs = tuple(program_from_dict(p, shape, f"{where}.programs[{i}]")
                         for i, p in enumerate(data["programs"]))
        n_out = sum(len(p.out_plus) for p in programs)
        values = {name: _vector(data[name], np.float64, f"{where}.{name}")
                  for name in ("y_scale", "d", "state_scale_v", "tia_range_a")}
        values["y_output"] = y_output = _vector(data["y_output"], np.int64, f"{where}.y_output")
        sizes = {"y_output": h, "y_scale": h, "d": h, "state_scale_v": h,
                 "tia_range_a": len(programs)}
        for name, size in sizes.items():
            if len(values[name]) != size:
                raise BadInput(f"{where}.{name} must have {size} entries, has {len(values[name])}")
        if not ((y_output >= 0) & (y_output < n_out)).all():
            raise BadInput(f"{where}.y_output must name outputs 0..{n_out - 1}")
        for p in programs:
            if (p.row_input >= h).any():
                raise BadInput(f"{where}: row_input of array {p.array} names a channel >= H={h}")
        layer = _integer(data["layer"], 0, 1 << 20, f"{where}.layer")
        return cls(layer, programs, **values)


@dataclass(frozen=True)
class Schedule:
    """All layers, run one after another; rows are clipped to +-v_read_max (V)."""

    layers: tuple[LayerSchedule, ...]
    v_read_max: float

    def steps_per_sample(self, length: int) -> int:
        """Crossbar steps for one sequence of `length` through all layers (delay and flush)."""
        return len(self.layers) * (length + FLUSH_STEPS)

    def to_dict(self) -> dict:
        return {"output_delay": OUTPUT_DELAY, "flush_steps": FLUSH_STEPS, "modes": MODES,
                "v_read_max": self.v_read_max, "layers": [layer.to_dict() for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: dict, shape: tuple[int, int, int], h: int, n_layers: int,
                  where: str = "schedule") -> "Schedule":
        if not isinstance(data, dict):
            raise BadInput(f"{where} must be an object")
        if (data.get("output_delay"), data.get("flush_steps")) != (OUTPUT_DELAY, FLUSH_STEPS):
            raise BadInput(f"{where}: output_delay/flush_steps must be "
                           f"{OUTPUT_DELAY}/{FLUSH_STEPS}")
        layers = data.get("layers")
        if not isinstance(layers, list) or len(layers) != n_layers:
            raise BadInput(f"{where}.layers must list the model's {n_layers} layers")
        # the board quantity's range, as the profile it was compiled for had it
        v = Field("v_read_max", "v_read_max", float).parse(data.get("v_read_max"), where)
        return cls(tuple(LayerSchedule.from_dict(layer, shape, h, f"{where}.layers[{i}]")
                         for i, layer in enumerate(layers)), v)


def layer_schedule(layer: int, matrices: KernelMatrices, tiles: list[TilePlace],
                   layout: TileLayout, rows: int, dg_siemens: float, state_scale_v: np.ndarray,
                   tia_range_a: float, feedback_deadband_v: float,
                   parallel: bool = False) -> LayerSchedule:
    """The loop programs of one layer whose kernel h sits at `tiles[h]`, all at the layer's TIA
    range and with the given feedback deadband: one per kernel (its rows only), or with
    `parallel` one per array."""
    s = matrices.state_size
    programs, y_output = [], np.empty(len(tiles), dtype=np.int64)
    offset = 0
    by_array = sorted(range(len(tiles)), key=lambda h: (tiles[h].array, h))
    groups = ([[h for h in by_array if tiles[h].array == a] for a in sorted({t.array for t in tiles})]
              if parallel else [[h] for h in by_array])
    for kernels in groups:
        array = tiles[kernels[0]].array
        row_input, row_feedback = np.full(rows, -1), np.full(rows, -1)
        gain_in, gain_fb = np.zeros(rows), np.zeros(rows)
        plus, minus = [], []
        for h in kernels:
            tile = tiles[h]
            base = sum(map(len, plus))
            state = layout.row_input < s
            r_state, r_u = tile.rows[state], tile.rows[~state]
            row_feedback[r_state] = base + layout.row_input[state]
            gain_fb[r_state] = _wire(layout.row_sign[state] * matrices.a_step[h] / dg_siemens)
            row_input[r_u] = h
            gain_in[r_u] = _wire(layout.row_sign[~state] * state_scale_v[h] * matrices.b_step[h]
                                 / matrices.a_step[h])
            plus.append(tile.cols[layout.out_plus])
            minus.append(np.where(layout.out_minus >= 0, tile.cols[layout.out_minus], -1))
            y_output[h] = offset + base + s
        programs.append(LoopProgram(array, row_input, gain_in, row_feedback, gain_fb,
                                    np.concatenate(plus), np.concatenate(minus),
                                    feedback_deadband_v))
        offset += len(programs[-1].out_plus)
    y_scale = 2 * matrices.c_step / (dg_siemens * state_scale_v)
    return LayerSchedule(layer, tuple(programs), y_output, y_scale, matrices.d, state_scale_v,
                         np.full(len(programs), tia_range_a))


def _wire(gain: np.ndarray) -> np.ndarray:
    """Gains as the board's wire carries them (float32), so host and board loops agree."""
    return np.asarray(gain, dtype=np.float32).astype(np.float64)


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


def _integer(value, low: int, high: int, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadInput(f"{where} must be an integer in {low}..{high}, got {value!r}")
    return value


def _vector(value, dtype, where: str) -> np.ndarray:
    if not isinstance(value, list):
        raise BadInput(f"{where} must be a list")
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise BadInput(f"{where} must be a list of numbers") from None
    if arr.ndim != 1 or (dtype is np.float64 and not np.isfinite(arr).all()):
        raise BadInput(f"{where} must be a flat list of finite numbers")
    if dtype is np.int64 and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise BadInput(f"{where} must be a list of integers")
    return arr
