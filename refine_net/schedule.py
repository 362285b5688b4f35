"""Learning-rate schedules shared by the refiner and the parsers."""
from __future__ import annotations

import torch


def poly_lr(base: float, step: int, total: int, power: float = 0.9) -> float:
    """DeepLab's poly schedule: base * (1 - step / total) ** power (step 0-based, < total)."""
    return base * (1 - step / total) ** power


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate: ``lr`` times the group's ``lr_scale``
    (1 when absent; :func:`refine_net.encoders.param_groups`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
