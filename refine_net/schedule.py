"""Learning-rate schedules shared by the refiner and the parsers."""
from __future__ import annotations

import torch


def poly_lr(base: float, step: int, total: int, power: float = 0.9) -> float:
    """DeepLab's poly schedule: base * (1 - step / total) ** power (step 0-based, < total)."""
    return base * (1 - step / total) ** power


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr
