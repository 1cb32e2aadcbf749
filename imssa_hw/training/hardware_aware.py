"""Hardware-aware training: each S4D layer's recurrence run as the board runs it, in torch.

Per step t = 0..L, for every kernel (as `compiler.schedule` describes the loop programs):

    V_state = DAC(shrink(out_x(t-1) * a_step / dG)) the state rows, fed back from the columns
    V_u     = DAC(u_t * s_x * b_step / a_step)      the input row (0 on the flush step t = L)
    I+, I-  = G+ V, G- V  (+ read noise)            G = G_min + |level| * dG on one side
    out     = ADC(I+) - ADC(I-)                     per column ("columns" pairs); ADC(I+ - I-)
                                                    when the pair sits on two rows
    y_{t-1} = out_y * 2 c_step / (dG * s_x)         the output lags one step

DAC and ADC round to their steps and clip at +-v_read_max and the layer's TIA range, with
straight-through gradients: the board's read chain in torch (`training.read_chain`, the twin of
the numpy model the emulator and the error budget run, `board.read_chain`); shrink moves a
fed-back voltage toward zero by the compiler's feedback deadband
(`loop_scales.feedback_deadband_v`).

While training, every batch also draws the board's errors: a conductance error per device
(`DeviceErrors.g_sigma_siemens`, write-verify tolerance plus relaxation), read noise, a fraction
of stuck devices, a constant offset of up to half an ADC code per column pair (what remains of a
TIA offset after calibration: the calibration subtracts it, but the rounding happened around
it; the compiler gives both columns of a pair the same fractional offset, so a zero difference
still reads zero). Each kernel runs alone in its VMM (the compiler's default schedule), so no
other kernel's rows add current to its columns. The scales (s_x, TIA range) come from
`model.loop_scales`, the function the compiler uses, so what was trained is what runs.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from imssa_hw.board.profile import BoardProfile, Differential
from imssa_hw.drivers.loop_program import shrink
from imssa_hw.model.loop_scales import (DEFAULT_HEADROOM, STATE_GAINS, LayerScales,
                                        feedback_deadband_v, loop_scales)
from imssa_hw.model.mapping import assemble_levels
from imssa_hw.training.read_chain import TorchReadChainModel
from imssa_hw.training.s4d import DiscreteKernels

if TYPE_CHECKING:
    from imssa_hw.training.classifier import S4DClassifier


class AnalogLoop:
    """One layer's kernels on the board of `profile` at `scales`: a callable
    (kernels, u (B, H, L)) -> y (B, H, L) without D*u."""

    def __init__(self, profile: BoardProfile, bits: int, scales: LayerScales):
        window = profile.conductance
        self.errors = profile.errors
        self.columns = profile.differential is Differential.COLUMNS
        self.g_min_siemens, self.g_max_siemens = window.g_min_siemens, window.g_max_siemens
        self.dg_siemens = window.dg(bits)
        self.chain = TorchReadChainModel.from_spec(profile.read, self.errors.read_noise_rel)
        self.range_a = scales.tia_range_a
        self.deadband_v = feedback_deadband_v(profile)
        self.state_scale = torch.as_tensor(scales.state_scale_v, dtype=torch.float32)

    def conductances(self, levels: torch.Tensor, noisy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """G+ and G- (H, outputs, inputs) in S of the level matrices, with drawn errors."""
        pair = [self.g_min_siemens + torch.relu(sign * levels) * self.dg_siemens
                for sign in (1, -1)]
        err = self.errors
        if not (noisy and (err.g_sigma_siemens or err.stuck_fraction)):
            return pair[0], pair[1]
        out = []
        for g in pair:
            g = g + err.g_sigma_siemens * torch.randn_like(g)
            draw = torch.rand_like(g)
            g = torch.where(draw < err.stuck_fraction / 2, torch.full_like(g, self.g_max_siemens),
                            g)
            g = torch.where(draw > 1 - err.stuck_fraction / 2, torch.zeros_like(g), g)
            out.append(g.clamp_min(0.0))
        return out[0], out[1]

    def __call__(self, k: DiscreteKernels, u: torch.Tensor, noisy: bool) -> torch.Tensor:
        """y (B, H, L) of the quantized kernels `k` on u (B, H, L); `noisy` draws the errors."""
        batch, h, length = u.shape
        a_step, b_step, c_step = k.a_step, k.b_step, k.c_step
        a, b = k.a_bar / a_step[:, None], k.b_bar / b_step[:, None]
        c = k.c / c_step[:, None]
        s = 2 * a.shape[1]
        levels = assemble_levels(u.new_zeros(h, s + 1, s + 1), a.real, a.imag, b.real, b.imag,
                                 c.real, c.imag)
        # kernel-major (H, B, ...) throughout; columns [G+ outputs | G- outputs]
        g = torch.cat(self.conductances(levels, noisy), dim=1).transpose(1, 2)  # (H, S+1, 2S+2)
        g_squared = g * g if noisy and self.errors.read_noise_rel else None
        chain, range_a = self.chain, self.range_a
        if noisy:  # each pair's ADC offset: calibration removes it, but not where it moved the
            # rounding; both columns of a pair share its fractional part (compiler/placement.py)
            half = torch.rand(h, 1, s + 1) - 0.5
            chain = replace(chain, column_offset_codes=(torch.cat([half, half], dim=-1)
                                                        if self.columns else half))
        feedback = (a_step / self.dg_siemens)[:, None, None]
        drive = (self.state_scale * b_step / a_step)[:, None]
        inputs = u.permute(2, 1, 0)  # (L, H, B)
        previous = u.new_zeros(h, batch, s)
        ys = []
        for t in range(length + 1):
            v_u = chain.dac(inputs[t] * drive) if t < length else u.new_zeros(h, batch)
            v = torch.cat([chain.dac(shrink(previous * feedback, self.deadband_v)),
                           v_u[..., None]], dim=-1)
            noise = (torch.randn(v.shape[:-1] + g.shape[-1:], dtype=v.dtype)
                     if g_squared is not None else None)
            currents = chain.currents_a(v, g, noise, g_squared)
            if self.columns:
                read = chain.corrected_a(chain.codes(currents, range_a), range_a)
                out = read[..., :s + 1] - read[..., s + 1:]
            else:  # the pair's difference current into one ADC
                out = chain.corrected_a(chain.codes(currents[..., :s + 1] - currents[..., s + 1:],
                                                    range_a), range_a)
            previous = out[..., :s]
            if t:
                ys.append(out[..., s])
        y = torch.stack(ys, dim=-1) * (2 * c_step
                                       / (self.dg_siemens * self.state_scale))[:, None, None]
        return y.permute(1, 0, 2)


FIT_SEQUENCES = 2048
"""At most this many sequences (drawn with a fixed seed) decide the state gains."""


def fit_state_gains(model: S4DClassifier, features: np.ndarray, profile: BoardProfile,
                    scales: list[LayerScales], gains: tuple[float, ...] = STATE_GAINS,
                    batch: int = 512) -> list[LayerScales]:
    """`scales` with each kernel's state scale multiplied by the gain of `gains` whose loop, run
    through the board's converters on `features` (B, L, F: training data), comes closest to
    the kernel's ideal output (the smallest mean squared error), layer by layer from the first:
    a layer's inputs come through the loops of the layers before it, at their chosen gains.
    Ties take the smaller gain.

    The measured scales hold the largest state of the whole training set within the row
    voltages, and those few states come from the loudest sequences; every other state then uses
    a fraction of the row DAC's steps and of the column ADC's codes. A larger scale spends more
    of both on the typical state and clips the rare largest; how far that pays differs from
    kernel to kernel (docs/model.md, state gains). A kernel's loop output depends only on its
    own inputs and state, so every kernel of a layer is fitted from the same runs."""
    if len(features) > FIT_SEQUENCES:
        pick = np.random.default_rng(0).choice(len(features), FIT_SEQUENCES, replace=False)
        features = features[np.sort(pick)]
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    training, loops = model.training, [block.ssm.loop for block in model.blocks]
    model.eval()
    bits, chosen = model.cfg.bits, list(scales)
    try:
        with torch.no_grad():
            for layer, measured in enumerate(scales):
                ssm = model.blocks[layer].ssm
                u = _layer_inputs(model, layer, profile, chosen, x, batch)
                k = ssm.discretize()
                ideal = [ssm(part) - k.d[:, None] * part for part in u]  # ssm.loop is None
                error = torch.stack([
                    sum(((AnalogLoop(profile, bits, measured.times(gain))(k, part, False)
                          - want) ** 2).sum(dim=(0, 2)) for part, want in zip(u, ideal))
                    for gain in gains])  # (gains, H)
                chosen[layer] = measured.times(np.asarray(gains)[error.argmin(0).numpy()])
    finally:
        for block, loop in zip(model.blocks, loops):
            block.ssm.loop = loop
        model.train(training)
    return chosen


def _layer_inputs(model: S4DClassifier, layer: int, profile: BoardProfile,
                  scales: list[LayerScales], x: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """The inputs u (B, H, L) of S4D layer `layer` on `x`, in batches, with the layers before it
    run through their loops at `scales`; `layer` and those after it are left without a loop."""
    for i, block in enumerate(model.blocks):
        block.ssm.loop = AnalogLoop(profile, model.cfg.bits, scales[i]) if i < layer else None
    seen: list[torch.Tensor] = []
    ssm = model.blocks[layer].ssm

    def keep(k: DiscreteKernels, u: torch.Tensor, noisy: bool) -> torch.Tensor:
        seen.append(u)
        return torch.zeros_like(u)
    ssm.loop = keep
    for i in range(0, len(x), batch):
        model(x[i:i + batch])
    ssm.loop = None
    return seen


def install(model: S4DClassifier, profile: BoardProfile,
            scales: list[LayerScales] | None) -> None:
    """Run every S4D layer of `model` through its AnalogLoop (None: back to the ideal model)."""
    for layer, block in enumerate(model.blocks):
        block.ssm.loop = (AnalogLoop(profile, model.cfg.bits, scales[layer])
                          if scales is not None else None)


def installed(model: S4DClassifier) -> bool:
    """Whether any S4D layer of `model` runs through an AnalogLoop (fine-tuning's measured
    layers have no loop)."""
    return any(isinstance(getattr(block.ssm, "loop", None), AnalogLoop) for block in model.blocks)


@contextmanager
def bypassed(model: S4DClassifier) -> Iterator[None]:
    """Inside the `with` block `model` runs its ideal recurrences; its loops come back after."""
    loops = [block.ssm.loop for block in model.blocks]
    for block in model.blocks:
        block.ssm.loop = None
    try:
        yield
    finally:
        for block, loop in zip(model.blocks, loops):
            block.ssm.loop = loop


def model_scales(model: S4DClassifier, features: np.ndarray, profile: BoardProfile,
                 headroom: float = DEFAULT_HEADROOM) -> list[LayerScales]:
    """The scales the compiler would choose for the model as it is now, on `features`."""
    from imssa_hw.training.classifier import as_checkpoint

    return loop_scales(as_checkpoint(model), features, profile, headroom)
