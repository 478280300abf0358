"""Helpers that archc copies into generated PyTorch files (only those a file uses).

This file is read as text, never imported by archc: emission must not import torch. Each
top-level definition is one helper; it is linted and tested like the code it lands in.
"""

import torch
import torch.nn.functional as F
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


def attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head scaled dot-product attention from packed q, k, v: (N, L, 3·D) to (N, L, D)."""
    n, length, packed = qkv.shape
    q, k, v = qkv.reshape(n, length, 3, heads, packed // (3 * heads)).permute(2, 0, 3, 1, 4)
    x = F.scaled_dot_product_attention(q, k, v)
    return x.transpose(1, 2).reshape(n, length, packed // 3)
