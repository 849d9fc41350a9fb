"""ModelAsLoss: snapshot semantics, value, gradients, refresh/EMA, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mal.losses import DFLoss, ModelAsLoss
from mal.models import DeepFilterNet, build_model
from mal.models.demucs import Demucs, DemucsConfig

RATE = 16000


def small_deepfilternet() -> DeepFilterNet:
    return build_model({"preset": "deepfilternet_16k", "conv_ch": 8, "emb_hidden": 32, "df_hidden": 32})


def small_demucs() -> Demucs:
    return Demucs(DemucsConfig(hidden=8, depth=3))


MODELS = {"deepfilternet": small_deepfilternet, "demucs": small_demucs}


def speech_like(batch: int = 2, seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Harmonic 'voiced' signal with a syllable-rate envelope: deterministic, speech-shaped."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * RATE)) / RATE
    out = []
    for _ in range(batch):
        f0 = 110 + 60 * torch.rand(1, generator=g).item()
        wave = sum(torch.sin(2 * math.pi * k * f0 * t + k) / k for k in range(1, 20))
        envelope = 0.5 * (1 - torch.cos(2 * math.pi * 4 * t))
        out.append(0.1 * wave * envelope)
    return torch.stack(out)


def noise_like(x: torch.Tensor, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(x.shape, generator=g) * x.std()


def snapshot_state(mal: ModelAsLoss) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in mal.snapshot.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_snapshot_is_frozen_copy_in_eval_mode():
    model = small_deepfilternet()
    mal = ModelAsLoss(model)
    assert mal.snapshot is not model.encoder
    assert all(not p.requires_grad for p in mal.snapshot.parameters())
    assert_same_state(snapshot_state(mal), model.encoder.state_dict())
    parent = nn.ModuleDict({"model": model, "mal": mal})
    parent.train()
    assert model.training and mal.training and not mal.snapshot.training
    assert not any(m.training for m in mal.snapshot.modules())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_snapshot_bit_identical_after_optimiser_steps(name):
    model = MODELS[name]()
    mal, l_df = ModelAsLoss(model), DFLoss.for_model(model)
    before_snapshot, before_model = snapshot_state(mal), {k: v.clone() for k, v in model.state_dict().items()}
    # Even an optimiser that is handed the snapshot's parameters (as `self.parameters()` of a
    # LightningModule would) with weight decay must leave them untouched.
    optimiser = torch.optim.AdamW(list(model.parameters()) + list(mal.parameters()), lr=1e-3, weight_decay=0.1)
    clean = speech_like()
    noisy = clean + 0.3 * noise_like(clean)
    model.train()
    for _ in range(3):
        optimiser.zero_grad()
        enhanced = model(noisy)
        (l_df(enhanced, clean) + mal(enhanced, clean)).backward()
        assert all(p.grad is None for p in mal.snapshot.parameters())
        optimiser.step()
    assert_same_state(before_snapshot, snapshot_state(mal))
    changed = [k for k, v in model.encoder.state_dict().items() if not torch.equal(v, before_model[f"encoder.{k}"])]
    assert changed, "the live encoder should have trained"


@pytest.mark.parametrize("stages", ["bottleneck", "all"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_zero_for_clean_and_grows_with_noise(name, stages):
    model = MODELS[name]()
    mal = ModelAsLoss(model, stages=stages)
    clean = speech_like()
    noise = noise_like(clean)
    # Exactly 0 for DeepFilterNet; CPU LSTMs take another kernel under no_grad (float rounding).
    assert mal(clean, clean).item() == pytest.approx(0.0, abs=1e-7)
    values = [mal(clean + level * noise, clean).item() for level in (0.03, 0.3, 3.0)]
    assert 0 < values[0] < values[1] < values[2], values


def test_uses_the_snapshot_not_the_live_encoder():
    model = small_deepfilternet()
    mal = ModelAsLoss(model)
    clean = speech_like()
    enhanced = clean + 0.3 * noise_like(clean)
    before = mal(enhanced, clean)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(torch.randn_like(p))
    assert torch.equal(mal(enhanced, clean), before)
    mal.refresh(model)
    assert not torch.equal(mal(enhanced, clean), before)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradient_reaches_decoder_not_snapshot(name):
    model = MODELS[name]()
    mal = ModelAsLoss(model)
    clean = speech_like()
    noisy = clean + 0.3 * noise_like(clean)
    mal(model(noisy), clean).backward()
    decoder_grads = [p.grad for p in model.decoder_parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in decoder_grads)
    assert all(torch.isfinite(g).all() for g in decoder_grads if g is not None)
    assert all(p.grad is None for p in mal.snapshot.parameters())


def test_refresh_takes_the_current_encoder():
    model = small_deepfilternet()
    mal = ModelAsLoss(model)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    clean = speech_like()
    for _ in range(2):
        optimiser.zero_grad()
        DFLoss.for_model(model)(model(clean + 0.3 * noise_like(clean)), clean).backward()
        optimiser.step()
    ids = [id(p) for p in mal.snapshot.parameters()]
    mal.refresh(model)
    assert_same_state(snapshot_state(mal), model.encoder.state_dict())
    assert ids == [id(p) for p in mal.snapshot.parameters()]  # copied in place
    assert all(not p.requires_grad for p in mal.snapshot.parameters())
    assert mal.state()["refreshes"] == 1


def test_snapshot_survives_state_dict_round_trip():
    model = small_deepfilternet()
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.mul_(1.5)
    parent = nn.ModuleDict({"model": model, "mal": ModelAsLoss(model)})
    parent["mal"].refresh(model)
    assert any(k.startswith("mal.snapshot.") for k in parent.state_dict())

    fresh = small_deepfilternet()  # another random init: its encoder differs
    restored = nn.ModuleDict({"model": fresh, "mal": ModelAsLoss(fresh)})
    restored.load_state_dict(parent.state_dict())  # strict
    assert_same_state(snapshot_state(parent["mal"]), snapshot_state(restored["mal"]))
    assert restored["mal"].state()["refreshes"] == 1
    clean = speech_like()
    enhanced = clean + 0.3 * noise_like(clean)
    assert torch.equal(parent["mal"](enhanced, clean), restored["mal"](enhanced, clean))


def test_ema_update_moves_snapshot_towards_live_encoder():
    model = small_deepfilternet()
    mal = ModelAsLoss(model, ema_decay=0.75)
    old = snapshot_state(mal)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    mal.update_ema(model)
    live = dict(model.encoder.named_parameters())
    for name, p in mal.snapshot.named_parameters():
        torch.testing.assert_close(p, 0.75 * old[name] + 0.25 * live[name])
    assert mal.state()["ema_updates"] == 1
    with pytest.raises(ValueError, match="ema_decay"):
        ModelAsLoss(model).update_ema(model)


def test_all_stages_uses_every_encoder_stage():
    model = small_deepfilternet()
    mal = ModelAsLoss(model, stages="all")
    feats = mal._features(speech_like())
    assert sorted(feats) == ["c0", "e0", "e1", "e2", "e3", "embedding"]
    demucs_feats = ModelAsLoss(small_demucs(), stages="all")._features(speech_like())
    assert sorted(demucs_feats) == ["e0", "e1", "e2", "embedding"]
    with pytest.raises(ValueError, match="stages"):
        ModelAsLoss(model, stages="some")


def test_requires_grad_on_parent_does_not_unfreeze():
    model = small_deepfilternet()
    mal = ModelAsLoss(model)
    parent = nn.ModuleDict({"model": model, "mal": mal})
    parent.requires_grad_(True)
    clean = speech_like()
    mal(model(clean), clean).backward()
    assert all(not p.requires_grad and p.grad is None for p in mal.snapshot.parameters())
