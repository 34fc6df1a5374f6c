"""An Adam-style optimizer whose step size adapts to the loss trend and the gradient's SNR.

:class:`AdaptiveLR` keeps Adam's two moment estimates and multiplies the learning rate by a
per-group factor ``h`` that it adapts online. The rule, per parameter group and step ``t``:

1. Adam moments: ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``, bias-corrected to
   ``m_hat``, ``v_hat``; the preconditioned direction is ``d = m_hat / (sqrt(v_hat) + eps)``.
2. Loss trend: the first-order change of the loss along the previous update ``u`` is
   ``g . u`` (``u = theta_t - theta_{t-1}``). Its normalized form
   ``c = cos(g, u)`` is negative while the loss still falls along the last step (the step was
   too short) and positive when the step overshot. This is the hypergradient of the loss with
   respect to the learning rate of Baydin et al., "Online Learning Rate Adaptation with
   Hypergradient Descent" (ICLR 2018), in its multiplicative, normalized form; it needs no
   extra forward or backward pass.
3. Signal-to-noise ratio: ``snr = sum(m_hat^2) / sum(v_hat)`` in ``[0, 1]`` estimates
   ``|E g|^2 / E|g|^2``, the quantity behind the gradient noise scale of McCandlish et al.,
   "An Empirical Model of Large-Batch Training" (2018): near 1 when the gradient is mostly
   signal, near 0 when it is mostly minibatch noise.
4. ``h = clip(h * exp(-hypergrad_lr * sqrt(snr) * c), 1 / max_factor, max_factor)``: the factor
   grows while steps keep descending, shrinks after overshoots, and moves slowly when the
   gradient is noise (so noise does not random-walk the learning rate). The bounds play the
   role of AdaBound's (Luo et al., ICLR 2019) clipping of the step size, but around the
   initial learning rate instead of converging to SGD.
5. ``theta = theta - lr * h * d`` (plus L2 ``weight_decay`` added to ``g`` as in Adam).

Departures from the references: the hypergradient uses the cosine rather than the raw dot
product (scale-free, as in the "normalized" variant of Baydin et al.), the adaptation rate is
damped by ``sqrt(snr)`` (the ratio of the norm of the mean gradient to the root mean square
gradient), and ``h`` is bounded. The default ``hypergrad_lr = 0.2`` was picked from
{0.02, 0.05, 0.1, 0.2, 0.5} on the digits CNN (seed 0, 8 epochs); damped by ``snr`` itself
instead of its root (and 0.02), ``h`` hardly moved there (15 epochs from ``lr = 1e-4`` doubled it).
Memory is three tensors per parameter (``m``, ``v`` and the last update), i.e. O(parameters)
like Adam.

The external learning rate ``group["lr"]`` is left to schedules (warmup, plateau); the
effective learning rate ``lr * h`` is kept in ``group["effective_lr"]`` for logging.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
import math
from typing import Any

import torch


class AdaptiveLR(torch.optim.Optimizer):
    """Adam with a learning-rate factor adapted from the loss trend and the gradient SNR.

    See the module docstring for the rule and its references.

    Args:
        params: Parameters or parameter groups.
        lr: Initial learning rate.
        betas: Adam's moment decay rates.
        eps: Adam's denominator term.
        weight_decay: L2 penalty added to the gradient.
        hypergrad_lr: Rate of the multiplicative update of the factor ``h`` (per step, at
            ``snr = 1`` and ``|cos| = 1`` the factor changes by ``exp(hypergrad_lr)``).
        max_factor: ``h`` stays within ``[1 / max_factor, max_factor]``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        hypergrad_lr: float = 0.2,
        max_factor: float = 100.0,
    ) -> None:
        if lr <= 0.0:
            raise ValueError(f"lr must be positive, got {lr}.")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}.")
        if max_factor < 1.0:
            raise ValueError(f"max_factor must be >= 1, got {max_factor}.")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "hypergrad_lr": hypergrad_lr,
            "max_factor": max_factor,
            "factor": 1.0,
            "effective_lr": lr,
            "snr": 1.0,
            "step": 0,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Takes one optimization step.

        Args:
            closure: Re-evaluates the model and returns the loss (optional).

        Returns:
            The loss returned by ``closure``, if given.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        """Updates the factor of ``group`` and steps its parameters."""
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        beta1, beta2 = group["betas"]
        group["step"] += 1
        t = group["step"]
        sums = []  # per parameter: g.u, g.g, u.u, m.m, sum(v); one host sync for all
        for p in params:
            grad = p.grad
            if grad.is_sparse:
                raise RuntimeError("AdaptiveLR does not support sparse gradients.")
            if group["weight_decay"] != 0.0:
                grad = grad.add(p, alpha=group["weight_decay"])
            state = self.state[p]
            if not state:
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
                state["last_update"] = torch.zeros_like(p)
            update, exp_avg, exp_avg_sq = (
                state["last_update"],
                state["exp_avg"],
                state["exp_avg_sq"],
            )
            exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            sums.append(
                torch.stack(
                    [
                        torch.sum(grad * update),
                        torch.sum(grad * grad),
                        torch.sum(update * update),
                        torch.sum(exp_avg * exp_avg),
                        torch.sum(exp_avg_sq),
                    ]
                ).double()
            )
        dot, grad_sq, update_sq, signal, second = torch.stack(sums).sum(dim=0).tolist()
        correction1 = 1 - beta1**t
        correction2 = 1 - beta2**t
        snr = (signal / correction1**2) / max(second / correction2, 1e-30)
        snr = min(max(snr, 0.0), 1.0)
        factor = group["factor"]
        if update_sq > 0.0 and grad_sq > 0.0 and math.isfinite(dot):
            cosine = dot / math.sqrt(grad_sq * update_sq)
            factor *= math.exp(-group["hypergrad_lr"] * math.sqrt(snr) * cosine)
            factor = min(max(factor, 1.0 / group["max_factor"]), group["max_factor"])
        group["factor"], group["snr"] = factor, snr
        step_size = group["lr"] * factor / correction1
        group["effective_lr"] = group["lr"] * factor
        for p in params:
            state = self.state[p]
            denom = (state["exp_avg_sq"] / correction2).sqrt_().add_(group["eps"])
            update = state["last_update"]
            torch.div(state["exp_avg"], denom, out=update).mul_(-step_size)
            p.add_(update)
