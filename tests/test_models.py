import pytest
import torch

from mal.models import build_model, count_macs, count_parameters


def test_48k_preset_matches_the_paper_size():
    model = build_model({"preset": "dfnet_48k"})
    assert abs(count_parameters(model) - 2.31e6) / 2.31e6 < 0.10
    assert model.cfg.n_fft == 960 and model.cfg.hop == 480 and model.cfg.lookahead == 2


def test_unknown_model_keys_are_named():
    with pytest.raises(ValueError, match="model.conv_channels"):
        build_model({"preset": "dfnet_16k", "conv_channels": 3})
    with pytest.raises(ValueError, match="model.name"):
        build_model({"name": "nope"})


def test_macs_scale_with_model_size():
    small = build_model({"preset": "dfnet_16k", "conv_ch": 16, "emb_dim": 64, "df_hidden": 64})
    big = build_model({"preset": "dfnet_16k"})
    assert 0 < count_macs(small) < count_macs(big)


def test_forward_keeps_length_and_embed_is_differentiable():
    model = build_model({"preset": "dfnet_16k", "conv_ch": 16, "emb_dim": 64, "df_hidden": 64}).eval()
    wave = torch.randn(2, 8001, requires_grad=True)
    assert model(wave).shape == wave.shape
    emb = model.embed(wave)
    assert emb.shape[0] == 2 and emb.shape[-1] == 64
    emb.abs().mean().backward()
    assert wave.grad is not None and wave.grad.abs().sum() > 0
