"""The DARTS primitive ops (``cnn/operations.py``, eval model: affine BN, no BN after pools),
built so that every R-C-B unit is an ``nn.Sequential(ReLU, Conv2d, BatchNorm2d)`` the
collector finds and whose statistics are exact (see :mod:`eznas_store.sources.spaces.darts`).

Two ops are rearranged without changing what they compute or their parameter count:

- **sep/dil conv**: DARTS's ``ReLU, depthwise k×k, pointwise 1×1, BN`` is
  ``Sequential(ReLU, SeparableConv2d, BN)``; :class:`SeparableConv2d` *is* the pointwise
  ``Conv2d`` (its ``weight`` is the pointwise weight) and runs its depthwise child first.
- **FactorizedReduce**: DARTS's ``ReLU; cat(conv_1(x), conv_2(x[:, :, 1:, 1:])); BN(C)`` is
  two units ``Sequential(ReLU, conv_1, BN(C/2))`` and ``Sequential(ReLU, ShiftedConv2d,
  BN(C/2))`` whose outputs are concatenated. BatchNorm is per channel, so one BN over the
  concatenation equals one BN per half (same batch statistics, running statistics,
  affine parameters and count).
"""

from __future__ import annotations

import torch
from torch import nn
from eznas_store.sources.spaces.layers import Zero

#: ops whose units are R-C-B blocks → (depthwise kernel, dilation, number of stacked units)
CONV_OPS: dict[str, tuple[int, int, int]] = {
    "sep_conv_3x3": (3, 1, 2), "sep_conv_5x5": (5, 1, 2),
    "dil_conv_3x3": (3, 2, 1), "dil_conv_5x5": (5, 2, 1),
}


class SeparableConv2d(nn.Conv2d):
    """A pointwise 1×1 conv (this module's ``weight``) applied after its depthwise child.

    ``depthwise``: k×k, ``groups=c_in``, the op's stride and dilation, padding
    ``dilation·(k-1)/2``. Both are bias-free, as in DARTS.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, dilation: int) -> None:
        super().__init__(c_in, c_out, 1, bias=False)
        self.depthwise = nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=dilation * (kernel - 1) // 2,
                                   dilation=dilation, groups=c_in, bias=False)

    def conv_input(self, x: torch.Tensor) -> torch.Tensor:
        """What this module's own ``weight`` convolves (VKDNW's Jacobian probes it)."""
        return self.depthwise(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.conv_input(x))


class ShiftedConv2d(nn.Conv2d):
    """FactorizedReduce's ``conv_2``: a 1×1 stride-2 conv of ``x[:, :, 1:, 1:]``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 1, stride=2, bias=False)

    def conv_input(self, x: torch.Tensor) -> torch.Tensor:
        """What this module's own ``weight`` convolves (VKDNW's Jacobian probes it)."""
        return x[:, :, 1:, 1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.conv_input(x))


def rcb(conv: nn.Conv2d, c_out: int) -> nn.Sequential:
    """One R-C-B unit (ReLU not in place: the collector hooks its input)."""
    return nn.Sequential(nn.ReLU(inplace=False), conv, nn.BatchNorm2d(c_out, affine=True))


class ReLUConvBN(nn.Module):
    """The preprocessing 1×1 unit ``ReLU, Conv(c_in→c_out), BN``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.op = rcb(nn.Conv2d(c_in, c_out, 1, bias=False), c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two 1×1 stride-2 convs (one shifted by a pixel), c_out/2 each."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.half_a = rcb(nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False), c_out // 2)
        self.half_b = rcb(ShiftedConv2d(c_in, c_out // 2), c_out // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.half_a(x), self.half_b(x)], dim=1)


class ConvOp(nn.Module):
    """sep_conv (two stacked units, only the first strided) or dil_conv (one unit)."""

    def __init__(self, name: str, c: int, stride: int) -> None:
        super().__init__()
        kernel, dilation, units = CONV_OPS[name]
        self.op = nn.Sequential(*(
            rcb(SeparableConv2d(c, c, kernel, stride if u == 0 else 1, dilation), c) for u in range(units)
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def make_op(name: str, c: int, stride: int) -> nn.Module:
    """The op ``name`` mapping ``c`` channels to ``c`` at ``stride`` (1 or 2)."""
    if name == "none":
        return Zero(stride)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    return ConvOp(name, c, stride)
