"""Helpers that archc copies into generated PyTorch files (only those a file uses).

This file is read as text, never imported by archc: emission must not import torch. Each
top-level definition is one helper; it is linted and tested like the code it lands in.
"""

import torch
from torch import nn


class StochasticDepth(nn.Module):
    """Drops a sample's whole residual branch with probability `p` in training and scales the
    survivors by 1 / (1 - p), as torchvision's `StochasticDepth(p, "row")`; the identity in eval.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        noise = noise.bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise


def center_crop(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The centre of `x` at `like`'s height and width (the crop of U-Net's skips)."""
    height, width = like.shape[-2:]
    top, left = (x.shape[-2] - height) // 2, (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]
