"""Layers more than one search space builds with (NB201 and DARTS both have a ``none`` edge)."""

from __future__ import annotations

import torch
from torch import nn


class Zero(nn.Module):
    """``none``: zeros of the op's output shape (subsampled first at stride 2)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)
