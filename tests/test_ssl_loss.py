"""SSLFeatureLoss on tiny random WavLM/wav2vec 2.0/HuBERT configs; the resampler vs soxr."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mal.losses import Resample, SSLFeatureLoss

transformers = pytest.importorskip("transformers")

TINY = dict(
    hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
    conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8),
    num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
)


def tiny(kind: str = "wavlm"):
    config_cls = {"wavlm": "WavLMConfig", "wav2vec2": "Wav2Vec2Config", "hubert": "HubertConfig"}[kind]
    return getattr(transformers, config_cls)(**TINY)


def waves(batch: int = 2, n: int = 8000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    clean = 0.1 * torch.randn(batch, n, generator=g)
    return clean, clean + 0.05 * torch.randn(batch, n, generator=g)


@pytest.mark.parametrize("kind", ["wavlm", "wav2vec2", "hubert"])
@pytest.mark.parametrize("layer", ["conv", 1, "2"])
def test_zero_for_identical_positive_otherwise(kind, layer):
    loss = SSLFeatureLoss.from_config(tiny(kind), layer=layer)
    clean, noisy = waves()
    assert loss(clean, clean).item() == 0.0
    assert loss(noisy, clean).item() > 0.0


def test_conv_layer_is_the_last_feature_extractor_output():
    loss = SSLFeatureLoss.from_config(tiny())
    clean, _ = waves()
    feats = loss.features(clean)
    assert feats.shape[:2] == (2, TINY["conv_dim"][-1])  # (B, C, T): before the projection
    torch.testing.assert_close(feats, loss.ssl_model.feature_extractor(clean))


def test_gradient_reaches_input_and_ssl_weights_stay_frozen():
    loss = SSLFeatureLoss.from_config(tiny(), sample_rate=48000)
    before = {k: v.clone() for k, v in loss.ssl_model.state_dict().items()}
    clean, noisy = waves(n=24000)
    enhanced = noisy.clone().requires_grad_(True)
    optimiser = torch.optim.AdamW([enhanced, *loss.parameters()], lr=1e-3, weight_decay=0.1)
    for _ in range(2):
        optimiser.zero_grad()
        loss(enhanced, clean).backward()
        assert enhanced.grad is not None and enhanced.grad.abs().sum() > 0
        optimiser.step()
    assert all(p.grad is None and not p.requires_grad for p in loss.ssl_model.parameters())
    for key, value in loss.ssl_model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not loss.ssl_model.training
    loss.train()
    assert not loss.ssl_model.training


def test_ssl_model_is_not_in_state_dict_but_follows_to():
    loss = SSLFeatureLoss.from_config(tiny())
    assert list(loss.parameters()) == []
    assert not any("feature_extractor" in k for k in loss.state_dict())
    loss.to(torch.float64)
    assert next(loss.ssl_model.parameters()).dtype == torch.float64


def test_loads_from_a_local_directory(tmp_path):
    model = transformers.WavLMModel(tiny())
    model.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text('{"do_normalize": true}')
    loss = SSLFeatureLoss(tmp_path, kind="wavlm")
    assert loss.normalize
    clean, noisy = waves()
    reference = SSLFeatureLoss(model, normalize=True)
    torch.testing.assert_close(loss(noisy, clean), reference(noisy, clean))


def test_missing_directory_names_the_path(tmp_path):
    missing = tmp_path / "wavlm-base-plus"
    with pytest.raises(FileNotFoundError) as info:
        SSLFeatureLoss.from_pretrained(missing, kind="wavlm")
    message = str(info.value)
    assert str(missing) in message and "ssl_model_path" in message and "\n" not in message


def test_bad_options_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        SSLFeatureLoss(tmp_path, kind="whisper")
    with pytest.raises(ValueError, match="unsupported SSL config"):
        SSLFeatureLoss.from_config(transformers.BertConfig())
    with pytest.raises(ValueError, match="layer"):
        SSLFeatureLoss.from_config(tiny(), layer="last")


def test_base_sized_default_config():
    config = transformers.WavLMConfig()
    assert (config.hidden_size, config.num_hidden_layers, len(config.conv_dim)) == (768, 12, 7)


def _band_limited_noise(n: int, rate: int, max_hz: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / rate) > max_hz] = 0
    x = np.fft.irfft(spectrum, n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("orig,new", [(48000, 16000), (44100, 16000), (16000, 48000), (8000, 16000)])
def test_resampler_matches_soxr(orig, new):
    soxr = pytest.importorskip("soxr")
    n = orig // 2
    t = np.arange(n) / orig
    signals = {
        "tone": (0.5 * np.sin(2 * np.pi * 997 * t)).astype(np.float32),
        "noise": _band_limited_noise(n, orig, 0.8 * min(orig, new) / 2, seed=orig),
    }
    resample = Resample(orig, new)
    for name, x in signals.items():
        ours = resample(torch.from_numpy(x)[None])[0].numpy()
        ref = soxr.resample(x, orig, new, quality="HQ")
        assert abs(len(ours) - len(ref)) <= 1
        m = min(len(ours), len(ref))
        inner = slice(m // 10, m - m // 10)  # soxr treats the edges its own way
        error = np.abs(ours[inner] - ref[inner]).max()
        assert error < 1e-4, (name, error)


def test_resampler_shapes_identity_and_gradient():
    resample = Resample(48000, 16000)
    x = torch.randn(2, 3, 4801, requires_grad=True)
    y = resample(x)
    assert y.shape == (2, 3, 1601)
    y.square().sum().backward()
    assert x.grad.abs().sum() > 0
    same = Resample(16000, 16000)
    assert same(x) is x
