"""Building blocks shared by the models: causal convs, grouped linear layers and GRUs."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class CausalConv2d(nn.Sequential):
    """Conv over (time, freq), causal in time, optional frequency stride, BN and activation.

    ``separable`` splits the conv into a grouped conv and a 1x1 conv (DeepFilterNet style).
    Input (B, C, T, F).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: tuple[int, int] = (1, 3),
        fstride: int = 1,
        separable: bool = True,
        activation: type[nn.Module] | None = nn.ReLU,
    ):
        kt, kf = kernel
        groups = math.gcd(in_ch, out_ch) if separable and kt * kf > 1 else 1
        layers: list[nn.Module] = []
        if kt > 1:
            layers.append(nn.ConstantPad2d((0, 0, kt - 1, 0), 0.0))
        layers.append(
            nn.Conv2d(in_ch, out_ch, kernel, stride=(1, fstride), padding=(0, kf // 2), groups=groups, bias=False)
        )
        if groups > 1 and out_ch > 1:
            layers.append(nn.Conv2d(out_ch, out_ch, 1, bias=False))
        layers.append(nn.BatchNorm2d(out_ch))
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)
        self.time_kernel = kt


class FreqUpConv2d(nn.Sequential):
    """Transposed conv doubling the frequency axis (kernel 1x3), then 1x1 conv, BN, ReLU."""

    def __init__(self, ch: int):
        super().__init__(
            nn.ConvTranspose2d(ch, ch, (1, 3), stride=(1, 2), padding=(0, 1), output_padding=(0, 1), groups=ch, bias=False),
            nn.Conv2d(ch, ch, 1, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(),
        )


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


class GroupedGRU(nn.Module):
    """Stack of GRU layers, each split into ``groups`` independent GRUs over feature slices.

    Between layers the group outputs are interleaved so information mixes across groups.
    ``forward(x (B, T, I), state) -> (y (B, T, H), state)``; ``state`` is (layers*groups, B, H/groups).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int = 1, groups: int = 1):
        super().__init__()
        if in_dim % groups or hidden % groups:
            raise ValueError(f"GRU dimensions {in_dim}->{hidden} not divisible by {groups} groups")
        self.groups, self.layers, self.hidden = groups, layers, hidden
        self.grus = nn.ModuleList(
            nn.GRU((in_dim if layer == 0 else hidden) // groups, hidden // groups, batch_first=True)
            for layer in range(layers)
            for _ in range(groups)
        )

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        new_state = []
        for layer in range(self.layers):
            outs = []
            for g, part in enumerate(x.chunk(self.groups, dim=-1)):
                i = layer * self.groups + g
                h0 = None if state is None else state[i : i + 1].contiguous()
                y, h = self.grus[i](part, h0)
                outs.append(y)
                new_state.append(h)
            x = torch.cat(outs, dim=-1)
            if self.groups > 1 and layer < self.layers - 1:
                x = x.unflatten(-1, (self.groups, -1)).transpose(-1, -2).flatten(-2)
        return x, torch.cat(new_state, dim=0)
