"""The analog loop's scales, chosen in one place for training and compiling alike.

A kernel's rows carry V = s_x * x for its state and s_x * (b_step / a_step) * u for its input
(s_x, the state scale, in V per unit); its columns' currents go through the layer's TIA/ADC
range. Both are picked from signals measured on data:

- s_x is the largest scale that keeps every state and input row within `headroom` * v_read_max
  (`state_scales`);
- the layer's TIA range is the smallest the board offers that holds the column currents over
  `headroom`, all but the rarest `CLIP_FRACTION` of them (one range per layer: the board is
  configured before each layer runs), and that keeps the fed-back state off the row DAC's
  rounding ties (`near_rounding_tie`);
- the fed-back state moves `FEEDBACK_DEADBAND_STEPS` of a DAC step toward zero before the DAC
  rounds it (`feedback_deadband_v`), which moves the ties that far out.

Hardware-aware training calls `measure` and `layer_scales` on the training set at every epoch of
its hardware phase. The checkpoint stores the final model's scales, each kernel's state scale
multiplied by the gain of `STATE_GAINS` whose loop comes closest to the kernel's ideal output on
the training set (`training.hardware_aware.fit_state_gains`: the measured scales hold the
loudest training sequence's largest state, which leaves the typical state few converter steps);
`stored_scales` reads them back, and the compiler uses them when the board matches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from imssa_hw.board.profile import BoardProfile
from imssa_hw.board.tables import board_tables
from imssa_hw.model import reference
from imssa_hw.model.checkpoint import Checkpoint, QuantizedKernels
from imssa_hw.model.mapping import KernelMatrices, kernel_matrices, tile_conductances, tile_layout

DEFAULT_HEADROOM = 0.9
"""The largest known signal uses 90 % of the row voltage range and of the TIA range."""
CLIP_FRACTION = 1e-4
"""The TIA range may leave this fraction of a layer's measured column samples above its
headroom (at most 1 in 10^4 land in its top tenth, and fewer still clip). The largest currents
come from a few training sequences (the loudest perturbed copies); holding them too would
double the range, and so the ADC step, for every other sample (docs/compiler.md, loop scales)."""
TIE_MARGIN = 0.02
"""A TIA range is passed over when 1-4 ADC codes of a fed-back state come within this fraction
of a row-DAC rounding tie (docs/compiler.md, loop scales)."""
TIE_CODES = 4
"""The smallest codes checked against the ties: the states near zero, where the loop's two
roundings decide whether a state decays or sticks."""
FEEDBACK_DEADBAND_STEPS = 0.05
"""Row-DAC steps by which the loop moves every fed-back state voltage toward zero before the DAC
rounds it. A column's TIA gain (3-5 % spread, divided out by the calibration) scales what one ADC
code of its state is worth in DAC steps, so on some columns a one-code state lands just over
half a step and sticks at one step instead of decaying; no choice of TIA range avoids that on
every column. Moving the ties 0.05 steps out (to 0.55, 1.55, ...) lets those states decay, for
a bias of at most 0.05 steps on the rest (docs/compiler.md, loop scales)."""
STATE_GAINS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
"""The multiples of a kernel's measured state scale that hardware-aware training tries when it
fits the scales to the converters (`training.hardware_aware.fit_state_gains`)."""
MEASURE_CHUNK = 256
"""Sequences run at once while measuring."""


@dataclass(frozen=True)
class LayerSignals:
    """The largest signals of one layer's kernels on some data (per kernel, (H,))."""

    u_max: np.ndarray
    """Largest |u| of the kernel's input."""
    x_max: np.ndarray
    """Largest |Re x| or |Im x| of its state."""
    column_top_siemens: np.ndarray
    """(H, K + 1) the largest column currents per volt of state scale, |z @ G| with
    z = [x; (b/a) u] (S), descending, K = CLIP_FRACTION x the layer's column samples: the
    layer's K largest (over every kernel, once scaled) are the ones its TIA range may clip."""


@dataclass(frozen=True)
class LayerScales:
    """The scales one layer runs with."""

    state_scale_v: np.ndarray
    """(H,) volts per unit of state."""
    tia_range_a: float
    """The layer's TIA/ADC full scale (A)."""
    peak_current_a: float
    """The largest column current on the data at the measured scales (A)."""
    state_gain: np.ndarray | float = 1.0
    """(H,) how many times the measured state scale each kernel's `state_scale_v` is
    (hardware-aware training fits them to the converters:
    `training.hardware_aware.fit_state_gains`); one number is every kernel's."""

    def __post_init__(self) -> None:
        gain = np.broadcast_to(np.asarray(self.state_gain, float), self.state_scale_v.shape)
        object.__setattr__(self, "state_gain", gain.copy())

    def to_dict(self) -> dict:
        return {"state_scale_v": self.state_scale_v.tolist(), "tia_range_a": self.tia_range_a,
                "peak_current_a": self.peak_current_a, "state_gain": self.state_gain.tolist()}

    def times(self, gain: float | np.ndarray) -> LayerScales:
        """These scales with the state scales `gain` times as large (one number, or one per
        kernel; the TIA range as it is)."""
        return replace(self, state_scale_v=self.state_scale_v * gain,
                       state_gain=self.state_gain * gain)


def state_scales(matrices: KernelMatrices, u_max: np.ndarray, x_max: np.ndarray,
                 v_max: float) -> np.ndarray:
    """Largest V per state unit keeping |x| and |u| rows within v_max (V per unit, (H,))."""
    with np.errstate(divide="ignore"):
        by_state = np.where(x_max > 0, v_max / x_max, np.inf)
        u_per_x = matrices.b_step * u_max / matrices.a_step  # u row volts per state volt
        by_input = np.where(u_per_x > 0, v_max / u_per_x, np.inf)
    scale = np.minimum(by_state, by_input)
    return np.where(np.isfinite(scale), scale, v_max)


def tia_range(peak_a: float, ranges: tuple[float, ...], headroom: float,
              usable: Callable[[float], bool] = lambda range_a: True) -> float:
    """The smallest range holding peak_a / headroom that is `usable` (the smallest holding it
    if none is; the largest range if none holds it)."""
    fitting = sorted(r for r in ranges if r * headroom >= peak_a)
    return next((r for r in fitting if usable(r)), fitting[0]) if fitting else max(ranges)


def dac_steps_per_code(range_a: float | np.ndarray, a_step: np.ndarray,
                       profile: BoardProfile, bits: int) -> np.ndarray:
    """Row-DAC steps that one ADC code of a state column becomes when it is fed back, per kernel:
    the ADC step times the feedback gain a_step / dG, over the DAC step."""
    read = profile.read
    return (read.adc_lsb_a(range_a) * np.asarray(a_step, float)
            / (profile.conductance.dg(bits) * read.dac_lsb_v))


def feedback_deadband_v(profile: BoardProfile) -> float:
    """The loop programs' feedback deadband on the board of `profile` (V)."""
    return FEEDBACK_DEADBAND_STEPS * profile.read.dac_lsb_v


def near_rounding_tie(steps_per_code: np.ndarray, margin: float = TIE_MARGIN,
                      codes: int = TIE_CODES, deadband: float = FEEDBACK_DEADBAND_STEPS) -> bool:
    """Whether 1..`codes` ADC codes land within `margin` (relative) of a rounding tie of the
    fed-back state: half a DAC step plus the `deadband` (in steps), 1.5 plus it, and so on.

    The loop rounds twice, at the ADC and at the row DAC. When a code is worth almost exactly
    a tie (40 uA on board-default at 1-150 uS, before the deadband: 0.4994 steps), a small state
    rounds to zero or sticks at one step depending on a 0.1 % column gain error, so whether the
    states near zero decay or hold differs from column to column and from what training saw."""
    steps = np.outer(np.atleast_1d(steps_per_code), np.arange(1, codes + 1))
    tie = np.floor(steps - deadband) + 0.5 + deadband
    return bool((np.abs(steps - tie) < margin * steps).any())


SCALES_DEPEND_ON = ("conductance", "read", "mapping")
"""The tables of a board's file form that the scales depend on: the window and the read chain
(the converters, the TIA ranges) and the differential mapping; not the geometry or the pulse
limits."""


def board_record(profile: BoardProfile) -> dict:
    """The board the scales are chosen for, stored with them: its spec as files record a board
    (`board_tables`, as calibrations and journals do) and its differential mapping."""
    record = {**board_tables(profile.spec), "mapping": {"differential": profile.differential.value}}
    return json.loads(json.dumps(record))  # as read back: lists, not tuples


def scales_fit(stored: object, profile: BoardProfile, bits: int) -> bool:
    """Whether scales stored for the board `stored` (`board_record`) hold on `profile`'s."""
    if isinstance(stored, dict) and "g_min_siemens" in stored:
        return stored == _key_before_0_18(profile, bits)
    now = board_record(profile)
    return isinstance(stored, dict) and all(stored.get(t) == now[t] for t in SCALES_DEPEND_ON)


def _key_before_0_18(profile: BoardProfile, bits: int) -> dict:
    """The record of models trained before 0.18 (the shipped ones among them): the quantities
    the scales depend on, in SI units."""
    window, read = profile.conductance, profile.read
    return {"g_min_siemens": window.g_min_siemens, "dg_siemens": window.dg(bits),
            "differential": profile.differential,
            "v_read_max": read.v_read_max, "dac_bits": read.dac_bits, "adc_bits": read.adc_bits,
            "tia_ranges_a": list(read.adc_ranges_a)}


def kernel_tiles(matrices: KernelMatrices, profile: BoardProfile, bits: int) -> np.ndarray:
    """Ideal conductances (H, rows, cols) of every kernel's tile."""
    layout = tile_layout(matrices.state_size, profile.differential)
    return np.stack([tile_conductances(levels, layout, profile.conductance, bits)
                     for levels in matrices.levels])


def layer_matrices(ckpt: Checkpoint) -> list[KernelMatrices]:
    """Every layer's kernel matrices."""
    return [kernel_matrices(ckpt.kernels(layer)) for layer in range(ckpt.config.n_layers)]


def measure(ckpt: Checkpoint, matrices: list[KernelMatrices], features: np.ndarray,
            profile: BoardProfile, chunk: int = MEASURE_CHUNK) -> list[LayerSignals]:
    """Every layer's largest signals on `features` (B, L, F), run in chunks of sequences;
    `matrices` are the checkpoint's (`layer_matrices`)."""
    n_layers = ckpt.config.n_layers
    tiles = [kernel_tiles(m, profile, ckpt.config.bits) for m in matrices]
    layout = tile_layout(matrices[0].state_size, profile.differential)
    peaks = [np.zeros((2, ckpt.config.h)) for _ in range(n_layers)]
    samples = len(features) * (features.shape[1] + 1) * ckpt.config.h * tiles[0].shape[2]
    keep = int(CLIP_FRACTION * samples) + 1
    tops = [np.zeros((ckpt.config.h, keep)) for _ in range(n_layers)]

    def recording(layer: int, u: np.ndarray) -> np.ndarray:
        kernels, m = ckpt.kernels(layer), matrices[layer]
        states = _states(kernels, u)  # (B, L, H, S): x_t
        previous = np.concatenate([np.zeros_like(states[:, :1]), states], axis=1)
        inputs = np.concatenate([u, np.zeros_like(u[:, :1])], axis=1)[..., None]
        z = np.concatenate([previous, inputs * (m.b_step / m.a_step)[:, None]], axis=-1)
        rows = z[..., layout.row_input] * layout.row_sign  # (B, L + 1, H, tile rows)
        currents = np.einsum("blhr,hrc->blhc", rows, tiles[layer])
        found = (np.abs(u).max(axis=(0, 1)), np.abs(states).max(axis=(0, 1, 3)))
        np.maximum(peaks[layer], np.stack(found), out=peaks[layer])
        per_kernel = np.abs(currents).transpose(2, 0, 1, 3).reshape(currents.shape[2], -1)
        both = np.concatenate([tops[layer], per_kernel], axis=1)
        tops[layer] = -np.partition(-both, keep - 1, axis=1)[:, :keep]
        c_re, c_im = _readout(kernels)
        return 2 * (states[..., 0::2] * c_re + states[..., 1::2] * c_im).sum(-1)
    for start in range(0, len(features), chunk):
        reference.forward(ckpt, features[start:start + chunk], recording)
    return [LayerSignals(p[0], p[1], -np.sort(-top, axis=1)) for p, top in zip(peaks, tops)]


def layer_scales(matrices: KernelMatrices, signals: LayerSignals, profile: BoardProfile,
                 bits: int, headroom: float = DEFAULT_HEADROOM) -> LayerScales:
    """State scales and TIA range of one layer from its measured signals (`bits` per device)."""
    scale = state_scales(matrices, signals.u_max, signals.x_max,
                         headroom * profile.read.v_read_max)
    top = signals.column_top_siemens
    currents = -np.sort(-(scale[:, None] * top).ravel())
    held = float(currents[top.shape[1] - 1])  # all but the layer's K largest are at most this
    chosen = tia_range(held, profile.read.adc_ranges_a, headroom, lambda range_a: not (
        near_rounding_tie(dac_steps_per_code(range_a, matrices.a_step, profile, bits))))
    return LayerScales(scale, chosen, float(currents[0]))


def loop_scales(ckpt: Checkpoint, features: np.ndarray, profile: BoardProfile,
                headroom: float = DEFAULT_HEADROOM) -> list[LayerScales]:
    """Every layer's scales for the board of `profile`, measured on `features`."""
    matrices = layer_matrices(ckpt)
    return [layer_scales(m, s, profile, ckpt.config.bits, headroom)
            for m, s in zip(matrices, measure(ckpt, matrices, features, profile))]


def scales_record(scales: list[LayerScales], profile: BoardProfile, headroom: float) -> dict:
    """The checkpoint's `meta["loop_scales"]`."""
    return {"board": board_record(profile), "board_profile": profile.name,
            "headroom": headroom, "layers": [s.to_dict() for s in scales]}


def stored_scales(ckpt: Checkpoint, profile: BoardProfile, headroom: float
                  ) -> list[LayerScales] | None:
    """The checkpoint's trained scales if they were chosen for this board, else None."""
    record = ckpt.meta.get("loop_scales")
    if not isinstance(record, dict) or record.get("headroom") != headroom:
        return None
    if not scales_fit(record.get("board"), profile, ckpt.config.bits):
        return None
    layers = record.get("layers")
    h = ckpt.config.h
    if not (isinstance(layers, list) and len(layers) == ckpt.config.n_layers and all(
            isinstance(r, dict) and len(r.get("state_scale_v", [])) == h for r in layers)):
        return None
    try:
        scales = [LayerScales(np.asarray(r["state_scale_v"], float), float(r["tia_range_a"]),
                              float(r["peak_current_a"]), r.get("state_gain", 1.0))
                  for r in layers]  # state_gain: one number before 0.16
    except (KeyError, TypeError, ValueError):  # not numbers where numbers belong, or not H
        return None
    numbers = [np.concatenate([s.state_scale_v, [s.tia_range_a], s.state_gain]) for s in scales]
    return scales if all(np.all(np.isfinite(n) & (n > 0)) for n in numbers) else None


def _readout(kernels: QuantizedKernels) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of (Re x, Im x) in y = 2 Re(C x): (Re C, -Im C), each (H, N/2)."""
    _, _, c = kernels.complex_values()
    return c.real, -c.imag


def _states(kernels: QuantizedKernels, u: np.ndarray) -> np.ndarray:
    """Real states (B, L, H, S) = [Re x_0, Im x_0, ...] of the ideal recurrence on u (B, L, H)."""
    a_bar, b_bar, _ = kernels.complex_values()
    x = np.zeros((u.shape[0], *a_bar.shape), dtype=np.complex128)
    out = np.empty((*u.shape, 2 * a_bar.shape[1]))
    for t in range(u.shape[1]):
        x = a_bar * x + b_bar * u[:, t, :, None]
        out[:, t, :, 0::2], out[:, t, :, 1::2] = x.real, x.imag
    return out
