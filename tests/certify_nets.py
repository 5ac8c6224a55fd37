"""Small networks the certificate tests share: a custom forward torch.fx reads as a chain,
and eval-mode batch norm with random statistics (test_certify_ibp.py, test_certify_crown.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Traced(nn.Module):
    """A custom forward that torch.fx reads as a chain (functional relu and flatten)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1, padding_mode="reflect")
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def batch_norm(channels: int, two_d: bool) -> nn.Module:
    """Eval-mode batch norm with random running statistics and scales of both signs."""
    norm = nn.BatchNorm2d(channels) if two_d else nn.BatchNorm1d(channels)
    with torch.no_grad():
        norm.running_mean.normal_()  # type: ignore[union-attr]
        norm.running_var.uniform_(0.2, 3.0)  # type: ignore[union-attr]
        norm.weight.normal_()
        norm.bias.normal_()
    return norm
