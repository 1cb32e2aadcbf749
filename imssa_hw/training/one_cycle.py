"""AdamW under a one-cycle schedule: the optimizer every training run of imssa-hw uses.

It computes what `torch.optim.AdamW` (on the CPU, no foreach, no amsgrad) under
`torch.optim.lr_scheduler.OneCycleLR` (cosine annealing, beta1 cycled between 0.95 and 0.85)
computes, operation for operation, so a model trains the same with either
(tests/test_one_cycle.py holds them side by side), but where OneCycleLR divides by zero (a
rise of no steps: a 10-step cycle with pct_start 0.1) this one starts at the top. It is
written out because torch's optimizers import torch._dynamo at their first step: 1.2 s of CPU
at the start of every `train`, `demo` and `finetune`.

    optimizer = OneCycleAdamW(model.parameter_groups(lr, ssm_lr, wd), [lr, ssm_lr], steps)
    for batch in batches:
        optimizer.zero_grad(); loss(batch).backward(); optimizer.step()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class _Moments:
    """One parameter's running averages of its gradient and squared gradient."""

    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    steps: int = 0


class OneCycleAdamW:
    """AdamW whose learning rate (per group) and beta1 follow one cycle over `total_steps`:
    up from max_lr / `div_factor` to max_lr in the first `pct_start` of the steps, then down to
    max_lr / (div_factor * `final_div_factor`), beta1 going the other way between
    `max_momentum` and `base_momentum`. `groups`: dicts with "params" and "weight_decay"."""

    def __init__(self, groups: Sequence[dict], max_lr: Sequence[float], total_steps: int,
                 pct_start: float = 0.3, beta2: float = 0.999, eps: float = 1e-8,
                 div_factor: float = 25.0, final_div_factor: float = 1e4,
                 base_momentum: float = 0.85, max_momentum: float = 0.95) -> None:
        if len(max_lr) != len(groups):
            raise ValueError(f"{len(max_lr)} learning rates for {len(groups)} parameter groups")
        if total_steps < 1:
            raise ValueError(f"total_steps must be at least 1, got {total_steps}")
        self.groups = [{"params": list(g["params"]), "weight_decay": g["weight_decay"],
                        "max_lr": lr, "initial_lr": lr / div_factor,
                        "min_lr": lr / div_factor / final_div_factor}
                       for g, lr in zip(groups, max_lr)]
        self.total_steps = total_steps
        self.beta2, self.eps = beta2, eps
        self.base_momentum, self.max_momentum = base_momentum, max_momentum
        self.rise_end = float(pct_start * total_steps) - 1  # the last step of the rise
        self.state: dict[int, _Moments] = {}  # by id() of the parameter
        self.steps = 0
        self._schedule()

    def _schedule(self) -> None:
        """Each group's learning rate and the shared beta1 at step `steps`."""
        n = self.steps
        if n > self.total_steps:
            raise ValueError(f"step {n} of a {self.total_steps}-step cycle")
        last = self.total_steps - 1
        rising = n <= self.rise_end
        start, end = (0.0, self.rise_end) if rising else (self.rise_end, last)
        pct = (n - start) / (end - start) if end > start else 1.0  # a rise of no steps: at the top
        lr_from, lr_to = ("initial_lr", "max_lr") if rising else ("max_lr", "min_lr")
        beta_from, beta_to = ((self.max_momentum, self.base_momentum) if rising else
                              (self.base_momentum, self.max_momentum))
        for group in self.groups:
            group["lr"] = _cosine(group[lr_from], group[lr_to], pct)
        self.beta1 = _cosine(beta_from, beta_to, pct)

    def zero_grad(self) -> None:
        for group in self.groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW update of every parameter that has a gradient, then the next step's rates."""
        beta1, beta2 = self.beta1, self.beta2
        for group in self.groups:
            lr, weight_decay = group["lr"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                m = self.state.get(id(param))
                if m is None:
                    m = self.state[id(param)] = _Moments(torch.zeros_like(param),
                                                         torch.zeros_like(param))
                m.steps += 1
                if weight_decay != 0:
                    param.mul_(1 - lr * weight_decay)
                m.exp_avg.lerp_(grad, 1 - beta1)
                m.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = lr / (1 - beta1 ** m.steps)
                denom = (m.exp_avg_sq.sqrt() / (1 - beta2 ** m.steps) ** 0.5).add_(self.eps)
                param.addcdiv_(m.exp_avg, denom, value=-step_size)
        self.steps += 1
        self._schedule()


def _cosine(start: float, end: float, pct: float) -> float:
    """From `start` at pct 0 to `end` at pct 1 along half a cosine (OneCycleLR's anneal)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
