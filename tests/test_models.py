import pytest
import torch

from mal.models import build_model, count_macs, count_parameters


def test_48k_preset_matches_the_paper_size():
    model = build_model({"preset": "deepfilternet2_arch"})
    assert abs(count_parameters(model) - 2.31e6) / 2.31e6 < 0.10
    assert model.cfg.n_fft == 960 and model.cfg.hop == 480 and model.cfg.conv_lookahead == 2


def test_unknown_model_keys_are_named():
    with pytest.raises(ValueError, match="model.conv_channels"):
        build_model({"preset": "deepfilternet_16k", "conv_channels": 3})
    with pytest.raises(ValueError, match="model.name"):
        build_model({"name": "nope"})


def test_macs_scale_with_model_size():
    small = build_model({"preset": "deepfilternet_16k", "conv_ch": 16, "emb_hidden": 64, "df_hidden": 64})
    big = build_model({"preset": "deepfilternet_16k"})
    assert 0 < count_macs(small) < count_macs(big)


def test_forward_keeps_length_and_embed_is_differentiable():
    model = build_model({"preset": "deepfilternet_16k", "conv_ch": 16, "emb_hidden": 64, "df_hidden": 64}).eval()
    wave = torch.randn(2, 8001, requires_grad=True)
    assert model(wave).shape == wave.shape
    emb = model.embed(wave)
    assert emb.shape[0] == 2 and emb.shape[-1] == 16 * 32 // 4  # conv_ch * n_erb / 4 (DeepFilterNet3: the GRU projects back)
    emb.abs().mean().backward()
    assert wave.grad is not None and wave.grad.abs().sum() > 0


def test_old_dfnet_checkpoints_and_presets_say_what_to_do(tmp_path, capsys):
    from mal.cli import main

    old = tmp_path / "old.ckpt"  # a model file of mal < 0.2, with the removed DFNet's spec
    torch.save({"model_spec": {"name": "dfnet", "sample_rate": 16000}, "state_dict": {}, "metadata": {}}, old)
    assert main(["enhance", str(old), "-o", str(tmp_path / "out"), "--model", str(old)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(old) in err and "deepfilternet_16k" in err and "mal finetune" in err
    with pytest.raises(ValueError, match="'dfnet_16k' was removed .* use 'deepfilternet_16k'"):
        build_model({"preset": "dfnet_16k"})


def test_small_preset_is_a_deepfilternet_whose_untrained_deep_filter_is_the_identity():
    from mal.models import DeepFilterNet

    model = build_model({"preset": "deepfilternet_16k"}).eval()
    assert isinstance(model, DeepFilterNet) and model.cfg.sample_rate == 16000
    enc = model.encoder(torch.randn(1, 16000) * 0.1)
    coefs, _, _ = model.df_decoder({"emb": enc.embedding, **enc.extras}, None, None)
    identity = torch.zeros_like(coefs)
    identity[..., model.cfg.df_order - 1 - model.cfg.df_lookahead, 0] = 1.0  # the tap on the current frame
    assert torch.equal(coefs, identity)
    public = build_model({"preset": "deepfilternet3_arch"})
    assert public.df_decoder.identity is None  # the public architectures are unchanged
