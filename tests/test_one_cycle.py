"""`training.one_cycle.OneCycleAdamW` against torch's AdamW under OneCycleLR, step for step."""

from __future__ import annotations

import sys

import pytest
import torch

from imssa_hw.training.one_cycle import OneCycleAdamW


def _model_and_batches(seed: int) -> tuple[torch.nn.Module, list[tuple[torch.Tensor, ...]]]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    batches = [(torch.randn(5, 6), torch.randint(0, 3, (5,))) for _ in range(4)]
    return model, batches


def _groups(model: torch.nn.Module) -> list[dict]:
    """Two groups as the classifier makes them: one with weight decay, one without; a bias
    left without a gradient (a frozen parameter is skipped)."""
    first, _, last = model
    first.bias.requires_grad_(False)
    return [{"params": [first.weight, last.weight], "weight_decay": 0.05},
            {"params": [first.bias, last.bias], "weight_decay": 0.0}]


def _train(model, optimizer, batches, steps: int, after_step=None) -> None:
    for i in range(steps):
        x, y = batches[i % len(batches)]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if after_step is not None:
            after_step()


@pytest.mark.parametrize("steps, pct_start", [(23, 0.1), (12, 0.3), (1, 0.1)])
def test_it_trains_as_torch_adamw_under_one_cycle_lr(steps, pct_start):
    ours, batches = _model_and_batches(3)
    theirs, _ = _model_and_batches(3)
    max_lr = [0.02, 0.005]
    optimizer = OneCycleAdamW(_groups(ours), max_lr, steps, pct_start=pct_start)
    reference = torch.optim.AdamW(_groups(theirs))
    schedule = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=max_lr, total_steps=steps,
                                                   pct_start=pct_start)
    lrs = []
    _train(ours, optimizer, batches, steps, lambda: lrs.append(optimizer.groups[0]["lr"]))
    _train(theirs, reference, batches, steps, schedule.step)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    assert ours[0].bias.grad is None and torch.equal(ours[0].bias, theirs[0].bias)
    assert optimizer.beta1 == reference.param_groups[0]["betas"][0]
    assert [g["lr"] for g in optimizer.groups] == [g["lr"] for g in reference.param_groups]
    if steps > 1:
        assert max(lrs) == pytest.approx(0.02, rel=0.05) and lrs[-1] < 0.02 / 25


def test_a_cycle_whose_rise_has_no_steps_starts_at_the_top():
    """10 steps at pct_start 0.1: OneCycleLR divides by zero at its first step; this one
    starts at the peak and comes down."""
    model, batches = _model_and_batches(4)
    optimizer = OneCycleAdamW([{"params": model.parameters(), "weight_decay": 0.0}], [0.01], 10,
                              pct_start=0.1)
    lrs = [optimizer.groups[0]["lr"]]  # the rate of each step, from the first to the tenth
    _train(model, optimizer, batches, 9, lambda: lrs.append(optimizer.groups[0]["lr"]))
    assert lrs[0] == 0.01 and lrs[9] == pytest.approx(0.01 / 25 / 1e4)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    _train(model, optimizer, batches, 1)
    with pytest.raises(ValueError, match="step 11 of a 10-step cycle"):
        optimizer.step()


def test_bad_arguments_are_refused():
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="2 learning rates for 1 parameter groups"):
        OneCycleAdamW([{"params": params, "weight_decay": 0.0}], [0.1, 0.2], 5)
    with pytest.raises(ValueError, match="total_steps must be at least 1"):
        OneCycleAdamW([{"params": params, "weight_decay": 0.0}], [0.1], 0)


class _NoDynamo:
    """An import finder that refuses torch._dynamo (and its submodules)."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch._dynamo" or name.startswith("torch._dynamo."):
            raise ModuleNotFoundError(f"{name} refused by the test", name=name)


def test_a_step_needs_no_torch_dynamo(monkeypatch):
    """What the optimizer is for: its steps work where torch._dynamo cannot be imported
    (torch's optimizers import it at their first step: 1.2 s of CPU)."""
    for name in [n for n in sys.modules if n == "torch._dynamo" or n.startswith("torch._dynamo.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoDynamo(), *sys.meta_path])
    weight = torch.nn.Parameter(torch.ones(3))
    weight.grad = torch.ones(3)
    with pytest.raises(ModuleNotFoundError, match="torch._dynamo refused"):
        torch.optim.AdamW([weight]).step()  # the finder bites torch's own
    model, batches = _model_and_batches(5)
    optimizer = OneCycleAdamW([{"params": model.parameters(), "weight_decay": 0.01}], [0.01], 4)
    before = [p.clone() for p in model.parameters()]
    _train(model, optimizer, batches, 4)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
