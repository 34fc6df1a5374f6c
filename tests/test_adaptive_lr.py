"""Unit tests of the adaptive learning-rate optimizer of the examples."""

from __future__ import annotations

import copy
from pathlib import Path
import sys

import pytest
import torch


ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.common.adaptive_lr import AdaptiveLR  # noqa: E402
from examples.common.training import make_optimizer  # noqa: E402


def quadratic(x: torch.Tensor) -> torch.Tensor:
    """An ill-conditioned quadratic with its minimum 0 at ``x = (1, -2, 3)``."""
    target = torch.tensor([1.0, -2.0, 3.0])
    scales = torch.tensor([1.0, 10.0, 100.0])
    return 0.5 * torch.sum(scales * (x - target) ** 2)


def minimize(lr: float, steps: int = 500, **kwargs: float) -> tuple[torch.Tensor, AdaptiveLR]:
    """Runs ``steps`` steps of :class:`AdaptiveLR` on :func:`quadratic` from the origin."""
    x = torch.zeros(3, requires_grad=True)
    optimizer = AdaptiveLR([x], lr=lr, **kwargs)
    for _ in range(steps):
        optimizer.zero_grad()
        quadratic(x).backward()
        optimizer.step()
    return x.detach(), optimizer


@pytest.mark.parametrize("lr", [1e-3, 1e-2, 1e-1])
def test_quadratic_reaches_the_optimum_over_three_decades(lr: float) -> None:
    x, optimizer = minimize(lr, steps=1500)
    assert torch.allclose(x, torch.tensor([1.0, -2.0, 3.0]), atol=1e-2)
    assert quadratic(x) < 1e-3


def test_factor_grows_when_the_learning_rate_is_too_small() -> None:
    x_adaptive, optimizer = minimize(1e-3, steps=300)
    assert optimizer.param_groups[0]["factor"] > 2.0
    assert optimizer.param_groups[0]["effective_lr"] == pytest.approx(
        1e-3 * optimizer.param_groups[0]["factor"]
    )
    x_fixed, _ = minimize(1e-3, steps=300, hypergrad_lr=0.0)
    assert quadratic(x_adaptive) < quadratic(x_fixed)


def test_factor_stays_within_its_bounds() -> None:
    _, optimizer = minimize(1e-4, steps=1500, hypergrad_lr=0.5, max_factor=4.0)
    assert 0.25 <= optimizer.param_groups[0]["factor"] <= 4.0


def test_without_adaptation_it_is_adam() -> None:
    torch.manual_seed(0)
    x0 = torch.randn(5)
    xa = x0.clone().requires_grad_(True)
    xb = x0.clone().requires_grad_(True)
    adaptive = AdaptiveLR([xa], lr=0.01, hypergrad_lr=0.0, weight_decay=0.1)
    adam = torch.optim.Adam([xb], lr=0.01, weight_decay=0.1)
    for _ in range(20):
        for x, optimizer in ((xa, adaptive), (xb, adam)):
            optimizer.zero_grad()
            (x**4).sum().backward()
            optimizer.step()
    assert torch.allclose(xa, xb, atol=1e-6)


def test_state_dict_round_trip() -> None:
    x, optimizer = minimize(1e-2, steps=50)
    saved_x, state = x.clone(), copy.deepcopy(optimizer.state_dict())
    assert state["param_groups"][0]["step"] == 50

    def continue_steps(y: torch.Tensor, opt: AdaptiveLR) -> torch.Tensor:
        for _ in range(10):
            opt.zero_grad()
            quadratic(y).backward()
            opt.step()
        return y.detach()

    # load_state_dict keeps the given tensors (no copy), so each optimizer gets its own copy.
    y_original = saved_x.clone().requires_grad_(True)
    original = AdaptiveLR([y_original], lr=1e-2)
    original.load_state_dict(copy.deepcopy(state))
    y_loaded = saved_x.clone().requires_grad_(True)
    loaded = AdaptiveLR([y_loaded], lr=1e-2)
    loaded.load_state_dict(copy.deepcopy(state))
    assert loaded.param_groups[0]["factor"] == optimizer.param_groups[0]["factor"]
    a = continue_steps(y_original, original)
    b = continue_steps(y_loaded, loaded)
    y_fresh = saved_x.clone().requires_grad_(True)
    c = continue_steps(y_fresh, AdaptiveLR([y_fresh], lr=1e-2))
    assert torch.equal(a, b)
    assert not torch.equal(b, c)
    assert torch.equal(loaded.state[y_loaded]["exp_avg"], original.state[y_original]["exp_avg"])


def test_closure_and_invalid_arguments() -> None:
    x = torch.ones(2, requires_grad=True)
    optimizer = AdaptiveLR([x], lr=0.1)

    def closure() -> float:
        optimizer.zero_grad()
        loss = (x**2).sum()
        loss.backward()
        return float(loss.detach())

    assert optimizer.step(closure) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        AdaptiveLR([x], lr=0.0)
    with pytest.raises(ValueError):
        AdaptiveLR([x], max_factor=0.5)


def test_make_optimizer_builds_it() -> None:
    x = torch.ones(2, requires_grad=True)
    optimizer = make_optimizer("adaptive", [x], learning_rate=0.01, weight_decay=1e-4)
    assert isinstance(optimizer, AdaptiveLR)
    assert optimizer.param_groups[0]["weight_decay"] == 1e-4


@pytest.mark.slow
def test_compare_optimizers_smoke(tmp_path: Path) -> None:
    pytest.importorskip("scipy")
    pytest.importorskip("sklearn")
    from examples import compare_optimizers

    output = tmp_path / "compare.json"
    results = compare_optimizers.main(["--smoke", "--output", str(output)])
    table = results["training"]["table"]
    assert set(table) == {"adaptive", "Adam", "SGD", "RMSprop"}
    assert all(row["n_runs"] == 4 and row["time_s"] > 0 for row in table.values())
    assert set(results["training"]["tests"]) == {"Adam", "SGD", "RMSprop"}
    test = results["training"]["tests"]["Adam"]["final_accuracy"]
    assert test["wins"] + test["ties"] + test["losses"] == 4
    assert set(results["samplers"]["trials_to_target"]["adaptive"]) == {"metabo", "tpe"}
    assert "Wilcoxon" in results["report"] and output.exists()
