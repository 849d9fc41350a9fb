"""L_df (DeepFilterNet2's spectral losses) and SI-SDR."""

from __future__ import annotations

import pytest
import torch

from mal.losses import DFLoss, MultiResSpecLoss, SISDRLoss, SpectralLoss, compress, si_sdr
from mal.models import build_model
from mal.models.demucs import Demucs, DemucsConfig


def pair(batch: int = 2, n: int = 8000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    clean = 0.1 * torch.randn(batch, n, generator=g)
    return clean, clean + 0.05 * torch.randn(batch, n, generator=g)


@pytest.mark.parametrize("loss", [SpectralLoss(320, 160), MultiResSpecLoss(), DFLoss(320, 160)], ids=type)
def test_zero_for_identical_positive_otherwise_and_finite_gradient(loss):
    clean, noisy = pair()
    assert loss(clean, clean).item() == 0.0
    assert loss(noisy, clean).item() > 0.0
    silent = torch.zeros_like(clean, requires_grad=True)  # |X| = 0: the compression's worst case
    loss(silent, clean).backward()
    assert torch.isfinite(silent.grad).all() and silent.grad.abs().sum() > 0


def test_more_noise_costs_more():
    clean, _ = pair()
    noise = torch.randn_like(clean)
    loss = DFLoss(320, 160)
    values = [loss(clean + level * noise, clean).item() for level in (0.01, 0.1, 1.0)]
    assert values[0] < values[1] < values[2]


def test_compression():
    spec = torch.complex(torch.tensor([3.0, 0.0]), torch.tensor([4.0, 0.0]))
    magnitude, pairs = compress(spec, 0.5)
    torch.testing.assert_close(magnitude[0], torch.tensor(5.0).sqrt())
    torch.testing.assert_close(pairs[0], torch.tensor([3.0, 4.0]) / 5 * 5**0.5)  # phase kept
    assert torch.equal(pairs[1], torch.zeros(2))
    magnitude, pairs = compress(spec, 1.0)
    torch.testing.assert_close(magnitude[0], torch.tensor(5.0))
    assert torch.equal(pairs, torch.view_as_real(spec))


def test_multires_matches_the_deepfilternet_formula():
    """One resolution, computed the textbook way with torch.angle and complex exponentials."""
    clean, noisy = pair(n=4000)
    n_fft, gamma, f_mag, f_complex = 512, 0.3, 500.0, 500.0
    stft = lambda x: torch.stft(  # noqa: E731
        x, n_fft, n_fft // 4, window=torch.hann_window(n_fft), normalized=True, pad_mode="constant",
        return_complex=True,
    )
    y, s = stft(noisy), stft(clean)
    y_mag, s_mag = y.abs().clamp_min(1e-12) ** gamma, s.abs().clamp_min(1e-12) ** gamma
    expected = torch.mean((y_mag - s_mag) ** 2) * f_mag
    y_c, s_c = y_mag * torch.exp(1j * torch.angle(y)), s_mag * torch.exp(1j * torch.angle(s))
    expected = expected + torch.mean((torch.view_as_real(y_c) - torch.view_as_real(s_c)) ** 2) * f_complex
    got = MultiResSpecLoss([n_fft], gamma, f_mag, f_complex)(noisy, clean)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=0)


def test_spectral_loss_uses_libdf_scaling():
    assert SpectralLoss(960, 480).scale == pytest.approx(1 / 960, rel=1e-5)
    loss = SpectralLoss(320, 160, factor_complex=0.0)
    clean, noisy = pair()
    expected = torch.mean((compress(loss.spectrum(noisy), 0.3)[0] - compress(loss.spectrum(clean), 0.3)[0]) ** 2)
    torch.testing.assert_close(loss(noisy, clean), expected * 1000)


def test_dfloss_defaults_and_model_resolution():
    loss = DFLoss()
    assert (loss.spectral.n_fft, loss.spectral.hop, loss.spectral.gamma) == (960, 480, 0.3)
    assert (loss.spectral.factor_magnitude, loss.spectral.factor_complex) == (1000.0, 1000.0)
    assert loss.multires.n_ffts == (256, 512, 1024) and loss.multires.factor == 500.0
    assert loss.multires.f_complex == [500.0] * 3
    dfnet = DFLoss.for_model(build_model({"preset": "deepfilternet_16k"}))
    assert (dfnet.spectral.n_fft, dfnet.spectral.hop) == (320, 160)
    demucs = DFLoss.for_model(Demucs(DemucsConfig(hidden=4, depth=2)))
    assert (demucs.spectral.n_fft, demucs.spectral.hop) == (320, 160)
    clean, noisy = pair()
    terms = loss.terms(noisy, clean)
    torch.testing.assert_close(loss(noisy, clean), terms["spectral"] + terms["multires"])
    assert DFLoss(mr_factor=0).multires is None
    with pytest.raises(ValueError, match="f_complex"):
        MultiResSpecLoss((256, 512), f_complex=[1.0])
    with pytest.raises(ValueError, match="shapes differ"):
        loss(noisy, clean[:, :-1])


def test_si_sdr():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 16000, generator=g)
    assert (si_sdr(ref, ref) > 70).all()
    noise = torch.randn(3, 16000, generator=g)
    noise = noise - (noise * ref).sum(-1, keepdim=True) / ref.square().sum(-1, keepdim=True) * ref  # orthogonal
    noise = noise * (ref.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True)) * 10 ** (-10 / 20)
    values = si_sdr(ref + noise, ref)
    assert values.shape == (3,)
    torch.testing.assert_close(si_sdr(0.3 * (ref + noise), ref), values)  # scale invariant
    torch.testing.assert_close(values, torch.full((3,), 10.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(SISDRLoss()(ref + noise, ref), -values.mean())
