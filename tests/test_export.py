"""ONNX export of the streaming step: onnxruntime output equals PyTorch streaming and offline
for every DeepFilterNet preset (the public models' exports: tests/test_deepfilternet.py)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from mal.cli import main
from mal.inference import TorchStream, run_stream, save_model
from mal.inference.export import METADATA_KEY, OnnxStream, export_onnx
from mal.models import DeepFilterNet, build_model

from conftest import eval_model  # noqa: E402

TOL = 1e-4


def noisy_tone(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))
    return (0.2 * tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def offline(model: DeepFilterNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)[None])[0].numpy()


@pytest.fixture(scope="module")
def model16() -> DeepFilterNet:
    return eval_model("deepfilternet_16k")


@pytest.fixture(scope="module")
def onnx16(model16, tmp_path_factory):
    return export_onnx(model16, tmp_path_factory.mktemp("onnx") / "small16.onnx")


def test_onnx_equals_pytorch_streaming_16k(model16, onnx16):
    x = noisy_tone(2.0, 16000)[:-55]
    torch_out = run_stream(TorchStream(model16), x)
    onnx_out = run_stream(OnnxStream(onnx16), x)
    assert np.abs(torch_out).max() > 0.05
    assert np.abs(onnx_out - torch_out).max() < TOL
    assert np.abs(onnx_out - offline(model16, x)).max() < TOL


@pytest.mark.parametrize("preset", ["deepfilternet2_arch", "deepfilternet3_arch"])
def test_onnx_equals_pytorch_streaming_48k(preset, tmp_path):
    model = eval_model(preset, seed=2)
    path = export_onnx(model, tmp_path / f"{preset}.onnx")
    x = noisy_tone(0.3, 48000, seed=2)
    assert np.abs(run_stream(OnnxStream(path), x) - run_stream(TorchStream(model), x)).max() < TOL


def test_onnx_stream_api_matches_torch_stream(model16, onnx16):
    onnx_stream, torch_stream = OnnxStream(onnx16, num_threads=2), TorchStream(model16)
    assert (onnx_stream.hop, onnx_stream.sample_rate) == (160, 16000)
    assert onnx_stream.latency_samples == torch_stream.latency_samples == 640
    assert onnx_stream.delay_samples == torch_stream.delay_samples
    x = noisy_tone(0.3, 16000, seed=3)[: 30 * 160]
    for i in range(0, len(x), 160):
        assert np.abs(onnx_stream.process(x[i : i + 160]) - torch_stream.process(x[i : i + 160])).max() < TOL
    tail = onnx_stream.flush()
    assert len(tail) == onnx_stream.delay_samples
    assert np.abs(tail - torch_stream.flush()).max() < TOL


def test_graph_is_one_step_with_state_in_and_out(model16, onnx16):
    graph = onnx.load(str(onnx16))
    inputs = [i.name for i in graph.graph.input]
    outputs = [o.name for o in graph.graph.output]
    meta = json.loads({p.key: p.value for p in graph.metadata_props}[METADATA_KEY])
    assert inputs == ["frame", *meta["states"]]
    assert outputs == ["out", *(f"new_{name}" for name in meta["states"])]
    frame_dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert frame_dims == ["batch", model16.cfg.hop]  # any number of streams at once (mal serve)
    for i, name in enumerate(meta["states"], start=1):
        dims = graph.graph.input[i].type.tensor_type.shape.dim
        assert [k for k, d in enumerate(dims) if d.dim_param == "batch"] == [meta["batch_axes"][name]]
    assert meta["model"] == model16.config_dict()


def test_export_is_atomic_and_leaves_model_alone(model16, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous")
    model16.train()
    try:
        export_onnx(model16, path)
        assert model16.training  # the caller's model keeps its mode
    finally:
        model16.eval()
    assert OnnxStream(path).hop == 160
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary left behind

    with pytest.raises(ValueError, match="DeepFilterNet-family"):
        export_onnx(build_model({"preset": "demucs_16k"}), tmp_path / "bad.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_onnx_stream_rejects_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        OnnxStream(tmp_path / "missing.onnx")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    identity = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                                      [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(identity), str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match="not a mal streaming export"):
        OnnxStream(tmp_path / "other.onnx")


def test_cli_export(model16, tmp_path, capsys):
    ckpt = tmp_path / "model.pt"
    save_model(model16, ckpt)
    out = tmp_path / "model.onnx"
    assert main(["export", str(ckpt), "-o", str(out)]) == 0
    assert "latency 40.0 ms" in capsys.readouterr().out
    x = noisy_tone(0.5, 16000, seed=4)
    assert np.abs(run_stream(OnnxStream(out), x) - offline(model16, x)).max() < TOL
    assert main(["export", str(ckpt), "-o", str(out)]) == 2  # exists: refuse without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(ckpt), "-o", str(out), "--overwrite"]) == 0
