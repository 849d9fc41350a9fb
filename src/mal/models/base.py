"""The model contract that makes Model-as-Loss work for any network (see docs/layout.md).

Every enhancement model is an ``EnhancementModel``:

- ``forward(noisy (B, N)) -> enhanced (B, N)``, same length as its input;
- ``encoder``: an ``nn.Module`` holding every encoder weight (front end included), with
  ``encoder(wave) -> Encoding``; ``encode(wave)`` calls it;
- ``embed(wave) -> Tensor``: the bottleneck of ``encode(wave)``, the paper's ``Enc()``,
  differentiable with respect to ``wave``;
- ``decode(encoding) -> enhanced wave``; ``decoder_parameters()`` are all the others.

``ModelAsLoss`` only needs ``encoder`` and ``embed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mal.models.layers import GroupedLinear


@dataclass
class Encoding:
    """Output of an encoder: the bottleneck ``embedding`` plus what the decoders need."""

    embedding: Tensor
    length: int
    extras: dict[str, Tensor] = field(default_factory=dict)


class EnhancementModel(nn.Module):
    """Base class: subclasses set ``self.encoder`` and implement ``decode``."""

    sample_rate: int
    encoder: nn.Module

    def encode(self, wave: Tensor) -> Encoding:
        """Encoder features of ``wave`` (B, N)."""
        return self.encoder(wave)

    def embed(self, wave: Tensor) -> Tensor:
        """Bottleneck embedding of ``wave`` (B, N): the MAL-encoder's output."""
        return self.encode(wave).embedding

    def decode(self, encoding: Encoding) -> Tensor:
        raise NotImplementedError

    def forward(self, noisy: Tensor) -> Tensor:
        squeeze = noisy.dim() == 1
        if squeeze:
            noisy = noisy.unsqueeze(0)
        out = self.decode(self.encode(noisy))
        return out.squeeze(0) if squeeze else out

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        enc = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in enc]

    def unlossed_parameters(self) -> list[nn.Parameter]:
        """Parameters no loss of mal reaches (the training freezes them, so that DDP, which
        checks every trained parameter gets a gradient, and AdamW's weight decay leave them be)."""
        return []

    @property
    def lookahead_samples(self) -> int:
        """Future input samples needed for one output sample (0 for fully causal)."""
        return 0

    @property
    def window_samples(self) -> int:
        """Length of the analysis window in samples (algorithmic latency w/o look-ahead)."""
        return 0


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: EnhancementModel, seconds: float = 1.0) -> int:
    """Multiply-accumulates to enhance ``seconds`` of audio, counted with forward hooks.

    Counts Conv1d/2d, ConvTranspose1d/2d, Linear, GroupedLinear, GRU/LSTM (the layers that
    dominate); elementwise work is ignored. Hand-written because torch's FlopCounterMode
    does not count recurrent layers on CPU.
    """
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)):
            k = module.weight[0].numel()  # in_ch/groups * kernel
            if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
                inp = inputs[0]
                total += inp.numel() * module.weight.shape[1] * module.weight[0, 0].numel()
            else:
                total += out.numel() * k
        elif isinstance(module, nn.Linear):
            total += out.numel() * module.in_features
        elif isinstance(module, GroupedLinear):
            total += out.numel() * module.weight.shape[1]
        elif isinstance(module, (nn.GRU, nn.LSTM)):
            gates = 3 if isinstance(module, nn.GRU) else 4
            steps = out.shape[0] * out.shape[1] if module.batch_first else out.shape[0] * out.shape[1]
            per_step = 0
            for layer in range(module.num_layers):
                i = module.input_size if layer == 0 else module.hidden_size * (2 if module.bidirectional else 1)
                per_step += gates * (i + module.hidden_size) * module.hidden_size
            total += steps * per_step * (2 if module.bidirectional else 1)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children()) or isinstance(m, GroupedLinear)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, int(seconds * model.sample_rate)))
    model.train(was_training)
    for h in handles:
        h.remove()
    return int(total)
