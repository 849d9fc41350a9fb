"""The DFNet model honours the model contract: lengths, differentiable embedding, causality, size."""

from __future__ import annotations

import pytest
import torch

from mal.models import DFNet, DFNetConfig, build_model, count_parameters, dfnet_48k


def small() -> DFNet:
    return DFNet(DFNetConfig(conv_ch=16, emb_dim=32, df_hidden=32))


@pytest.mark.parametrize("length", [1, 159, 161, 4001, 8001])
def test_output_length_equals_input_for_odd_lengths(length):
    model = small()
    x = 0.1 * torch.randn(2, length)
    assert model(x).shape == (2, length)
    assert model.eval()(x[0]).shape == (length,)


def test_embed_is_differentiable_wrt_wave():
    model = small()
    wave = (0.1 * torch.randn(2, 4000)).requires_grad_(True)
    emb = model.embed(wave)
    assert emb.shape[0] == 2 and emb.shape[-1] == model.cfg.emb_dim
    emb.abs().mean().backward()
    assert wave.grad is not None and torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0


def test_causal_up_to_lookahead_and_window():
    model = small().eval()  # BatchNorm in train mode mixes frames through batch statistics
    x = 0.1 * torch.randn(1, 8000)
    t = 6000
    changed = x.clone()
    changed[:, t:] = 0.1 * torch.randn(1, 2000)
    with torch.no_grad():
        a, b = model(x), model(changed)
    safe = t - model.lookahead_samples - model.window_samples
    assert safe > 0
    assert torch.equal(a[:, :safe], b[:, :safe])
    assert not torch.equal(a[:, safe:], b[:, safe:])


def test_encoder_and_decoder_parameters_partition_the_model():
    model = small()
    encoder = {id(p) for p in model.encoder.parameters()}
    decoder = {id(p) for p in model.decoder_parameters()}
    assert encoder and decoder and not encoder & decoder
    assert encoder | decoder == {id(p) for p in model.parameters()}


def test_dfnet_48k_has_the_papers_size():
    model = build_model({"preset": "dfnet_48k"})
    assert abs(count_parameters(model) - 2.31e6) / 2.31e6 < 0.10
    assert count_parameters(DFNet(dfnet_48k())) == count_parameters(model)
    assert (model.cfg.sample_rate, model.cfg.n_fft, model.cfg.hop, model.cfg.lookahead) == (48000, 960, 480, 2)


def test_bound_taps_caps_the_sum_of_tap_magnitudes_and_keeps_small_filters():
    from mal.models.dfnet import bound_taps

    torch.manual_seed(0)
    big = 3 * torch.randn(4, 7, 5, 2)
    bounded = bound_taps(big)
    assert torch.all(bounded.square().sum(-1).sqrt().sum(-1) <= 1 + 1e-5)
    # the direction of each bin's filter is kept: a positive rescaling per bin
    ratio = bounded / big
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-6)
    small_filter = 0.1 * torch.rand(4, 7, 5, 2)
    assert torch.equal(bound_taps(small_filter), small_filter)


def test_gain_bound_stops_the_deep_filter_from_amplifying_a_stationary_tone():
    """With large random deep-filter weights the plain filter boosts a tone; the bounded one cannot."""
    import math

    def model(bound: bool) -> DFNet:
        torch.manual_seed(3)
        m = DFNet(DFNetConfig(conv_ch=16, emb_dim=32, df_hidden=32, df_gain_bound=bound))
        torch.nn.init.normal_(m.df_decoder.out[0].weight, std=2.0)  # taps far from the identity
        return m.eval()

    t = torch.arange(16000) / 16000
    tone = 0.1 * torch.sin(2 * math.pi * 500 * t)  # inside the deep-filter band (< 3.2 kHz)
    middle = slice(4000, 12000)
    gains = {}
    for bound in (False, True):
        with torch.no_grad():
            out = model(bound)(tone[None])[0]
        gains[bound] = float(out[middle].square().mean() / tone[middle].square().mean())
    assert gains[False] > 1.5, gains  # the unbounded filter amplifies here
    assert gains[True] <= 1.0 + 1e-3, gains
