"""The DEMUCS-style waveform U-Net honours the model contract and trains."""

from __future__ import annotations

import pytest
import torch

from mal.losses import DFLoss, ModelAsLoss
from mal.models import build_model, count_parameters, model_spec, register_model
from mal.models.base import EnhancementModel
from mal.models.demucs import Demucs, DemucsConfig, valid_length


@pytest.fixture(autouse=True)
def _registered():
    register_model("demucs", Demucs, DemucsConfig)


def small(**overrides) -> Demucs:
    return Demucs(DemucsConfig(**{"hidden": 8, "depth": 3, **overrides}))


def test_registry_round_trip():
    model = build_model({"name": "demucs", "hidden": 8, "depth": 3})
    assert isinstance(model, Demucs) and isinstance(model, EnhancementModel)
    spec = model_spec(model)
    assert spec["name"] == "demucs" and spec["hidden"] == 8
    rebuilt = build_model(spec)
    assert count_parameters(rebuilt) == count_parameters(model)
    with pytest.raises(ValueError, match="unknown key"):
        build_model({"name": "demucs", "n_fft": 512})
    default = Demucs()
    assert (default.cfg.sample_rate, default.cfg.hidden, default.cfg.depth) == (16000, 32, 4)
    assert count_parameters(default) < 2.5e6


@pytest.mark.parametrize("length", [1, 37, 255, 4001, 8000])
def test_output_length_equals_input(length):
    model = small().eval()
    x = torch.randn(2, length)
    assert model(x).shape == (2, length)
    assert model(x[0]).shape == (length,)
    assert valid_length(model.cfg, length) >= length


def test_encoder_contract():
    model = small()
    x = torch.randn(2, 4000, requires_grad=True)
    enc = model.encode(x)
    hidden = model.cfg.channels()[-1]
    assert enc.embedding.dim() == 3 and enc.embedding.shape[0] == 2 and enc.embedding.shape[2] == hidden
    assert enc.length == 4000
    assert sorted(enc.extras) == ["e0", "e1", "e2", "std"]
    model.embed(x).square().sum().backward()
    assert x.grad.abs().sum() > 0
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    decoder = model.decoder_parameters()
    assert decoder and not encoder_ids & {id(p) for p in decoder}
    assert len(encoder_ids) + len(decoder) == len(list(model.parameters()))


def test_causal_within_its_lookahead():
    model = small(normalize=False).eval()  # the utterance-level std looks at the whole input
    x = torch.randn(1, 6000)
    t = 4000
    changed = x.clone()
    changed[:, t:] = torch.randn(1, 2000)
    with torch.no_grad():
        a, b = model(x), model(changed)
    safe = t - model.lookahead_samples
    assert safe > 0
    assert torch.equal(a[:, :safe], b[:, :safe])
    assert not torch.equal(a[:, safe:], b[:, safe:])


def test_bidirectional_variant_runs():
    model = small(causal=False)
    assert model(torch.randn(1, 3000)).shape == (1, 3000)


def test_training_lowers_dfloss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = small(hidden=16)
    g = torch.Generator().manual_seed(0)
    t = torch.arange(8000) / 16000
    clean = torch.stack([0.1 * torch.sin(2 * torch.pi * f * t) for f in (220.0, 330.0)])
    noisy = clean + 0.05 * torch.randn(clean.shape, generator=g)
    loss_fn = DFLoss.for_model(model)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        optimiser.zero_grad()
        loss = loss_fn(model(noisy), clean)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = loss_fn(model(noisy), clean).item()
    assert final < 0.8 * losses[0], losses


def test_model_as_loss_works_with_demucs():
    model = small()
    mal = ModelAsLoss(model, stages="all")
    clean = 0.1 * torch.randn(2, 4000)
    noisy = clean + 0.1 * torch.randn(2, 4000)
    mal(model(noisy), clean).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder_parameters())
