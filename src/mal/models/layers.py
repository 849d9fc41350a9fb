"""Building blocks shared by the models: grouped linear layers."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GroupedLinear(nn.Module):
    """Linear layer applied independently to ``groups`` slices of the last dimension."""

    def __init__(self, in_dim: int, out_dim: int, groups: int = 1, bias: bool = True):
        super().__init__()
        if in_dim % groups or out_dim % groups:
            raise ValueError(f"dimensions {in_dim}->{out_dim} not divisible by {groups} groups")
        self.groups = groups
        bound = 1 / math.sqrt(in_dim // groups)
        self.weight = nn.Parameter(torch.empty(groups, in_dim // groups, out_dim // groups).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape[:-1]
        # A batched MatMul over the groups rather than an einsum: the same numbers, and much
        # faster in onnxruntime (whose Einsum kernel is slow) and for one-frame steps.
        if x.numel() == x.shape[-1]:  # one row (a streaming step): (1, G, I/G) is already (G, 1, I/G)
            y = (x.reshape(self.groups, 1, -1) @ self.weight).reshape(*shape, -1)
        else:
            x = x.reshape(-1, self.groups, x.shape[-1] // self.groups).transpose(0, 1)  # (G, N, I/G)
            y = (x @ self.weight).transpose(0, 1).reshape(*shape, -1)
        return y if self.bias is None else y + self.bias
