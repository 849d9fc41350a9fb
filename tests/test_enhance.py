import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mal.audio import read_audio
from mal.cli import main
from mal.inference import enhance_array, enhance_files, load_model, save_model
from mal.models import build_model

TINY = {"preset": "deepfilternet_16k", "conv_ch": 8, "emb_hidden": 32, "df_hidden": 32}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    path = tmp_path_factory.mktemp("m") / "tiny.ckpt"
    save_model(model, path)
    return path


def _speechlike(rate, seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    env = (np.sin(2 * np.pi * 3 * t) > 0).astype(np.float32)
    return (0.3 * env * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def test_saved_model_round_trips(model_file):
    model = load_model(model_file)
    x = torch.from_numpy(_speechlike(16000, 1.0))[None]
    again = load_model(model_file)
    torch.testing.assert_close(model(x), again(x))


def test_chunked_enhancement_matches_whole_file(model_file):
    model = load_model(model_file)
    x = _speechlike(16000, 12.0)
    whole = enhance_array(model, x, 16000, chunk_seconds=100)
    chunked = enhance_array(model, x, 16000, chunk_seconds=3.0, context_seconds=2.0)
    assert chunked.shape == whole.shape
    # outside the cross-fades the chunks see enough context to agree closely
    assert np.max(np.abs(chunked - whole)) < 0.05 * np.max(np.abs(whole)) + 1e-3


def test_any_rate_and_channels_keep_shape(model_file):
    model = load_model(model_file)
    for rate in (8000, 44100):
        stereo = np.stack([_speechlike(rate, 1.3), _speechlike(rate, 1.3, 1)], axis=1)
        out = enhance_array(model, stereo, rate)
        assert out.shape == stereo.shape and out.dtype == np.float32


def test_enhance_files_cli_reports_bad_files_and_resumes(model_file, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", _speechlike(16000, 1.0), 16000, subtype="PCM_16")
    sf.write(src / "b.flac", _speechlike(48000, 0.7), 48000)
    (src / "broken.wav").write_bytes(b"not audio at all")
    out = tmp_path / "out"
    code = main(["enhance", str(src), "-o", str(out), "--model", str(model_file)])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.wav" in err and "1 file(s) failed" in err
    a, rate_a = read_audio(out / "a.wav")
    assert rate_a == 16000 and len(a) == 16000 and sf.info(str(out / "a.wav")).subtype == "PCM_16"
    b_info = sf.info(str(out / "b.flac"))
    assert b_info.samplerate == 48000 and b_info.frames == int(48000 * 0.7)
    # a second run skips what is done
    mtime = (out / "a.wav").stat().st_mtime_ns
    result = enhance_files(load_model(model_file), [src / "a.wav"], out, progress=False)
    assert result.skipped and (out / "a.wav").stat().st_mtime_ns == mtime


def test_refuses_output_inside_input_folder(model_file, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", _speechlike(16000, 0.5), 16000)
    assert main(["enhance", str(src), "-o", str(src / "sub"), "--model", str(model_file)]) == 2
    assert "inside input folder" in capsys.readouterr().err
    assert main(["enhance", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), "--model", str(model_file)]) == 2


def test_enhance_vbd_test_folder(model_file, shared_data, tmp_path):
    noisy = shared_data / "vbd-test" / "noisy"
    out = tmp_path / "enh"
    assert main(["enhance", str(noisy), "-o", str(out), "--model", str(model_file)]) == 0
    inputs = sorted(noisy.glob("*.wav"))
    assert len(inputs) == 64
    for path in inputs:
        a, b = sf.info(str(path)), sf.info(str(out / path.name))
        assert (a.frames, a.samplerate) == (b.frames, b.samplerate)


def test_streaming_and_onnx_cli_match_offline(model_file, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    x = _speechlike(22050, 1.5)
    sf.write(src / "a.wav", x, 22050, subtype="FLOAT")
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["export", str(model_file), "-o", str(onnx_path)]) == 0
    outs = {}
    for mode, extra in [("offline", []), ("streaming", ["--streaming"]), ("onnx", ["--onnx", str(onnx_path)])]:
        out = tmp_path / mode
        assert main(["enhance", str(src), "-o", str(out), "--model", str(model_file), *extra]) == 0
        outs[mode], rate = read_audio(out / "a.wav")
        assert rate == 22050 and len(outs[mode]) == len(x)
    np.testing.assert_allclose(outs["streaming"], outs["offline"], atol=1e-4)
    np.testing.assert_allclose(outs["onnx"], outs["offline"], atol=1e-4)


def test_jobs_give_the_same_files_and_report_bad_ones(model_file, tmp_path, capsys):
    """--jobs 2 (worker processes) writes byte-identical outputs to a serial run, in the same record."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        sf.write(src / f"f{i}.wav", _speechlike(16000, 0.8 + 0.2 * i, seed=i), 16000, subtype="PCM_16")
    (src / "broken.wav").write_bytes(b"not audio")
    model = load_model(model_file)
    serial = enhance_files(model, [src], tmp_path / "serial", progress=False)
    pooled = enhance_files(model, [src], tmp_path / "pooled", progress=False, jobs=2)
    assert [p.name for p in pooled.written] == [p.name for p in serial.written] == ["f0.wav", "f1.wav", "f2.wav"]
    assert [str(s) for s, _ in pooled.failed] == [str(s) for s, _ in serial.failed] == [str(src / "broken.wav")]
    for name in ("f0.wav", "f1.wav", "f2.wav"):
        assert (tmp_path / "pooled" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()
    assert main(["enhance", str(src), "-o", str(tmp_path / "x"), "--model", str(model_file), "--jobs", "2", "--streaming"]) == 2
    assert "--jobs needs an offline model" in capsys.readouterr().err


def _error(capsys) -> str:
    """stderr, which must be exactly one ``mal: error:`` line."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("mal: error: ") and "\n" not in err, err
    return err


def test_model_names_any_case_closest_name_and_onnx_hint(model_file, toy_data, tmp_path, capsys):
    """--model, mal info and finetune --from: one loader, names in any case, the closest name, --onnx for ONNX."""
    sf.write(tmp_path / "a.wav", _speechlike(16000, 0.3), 16000)
    enhance = ["enhance", str(tmp_path / "a.wav"), "-o", str(tmp_path / "out"), "--model"]
    for wrong in ("deepfilternet4", "deepfilternet"):
        assert main([*enhance, wrong]) == 2
        err = _error(capsys)
        assert f"{wrong}: no model file there" in err and "did you mean deepfilternet3?" in err and "`mal models`" in err
    assert main(["info", "DeepFilterNet3"]) == 0 and "sample rate:      48000 Hz" in capsys.readouterr().out
    assert main(["info", "DeepFilterNet_16K"]) == 0 and "sample rate:      16000 Hz" in capsys.readouterr().out
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["export", str(model_file), "-o", str(onnx_path)]) == 0
    capsys.readouterr()
    for command in ([*enhance, str(onnx_path)], ["info", str(onnx_path)]):
        assert main(command) == 2
        assert f"run it with `mal enhance --onnx {onnx_path}`" in _error(capsys)
    run = tmp_path / "run"
    assert main(["finetune", "--from", "deepfilternet4", "--config", str(REPO / "configs" / "mal_frozen.yaml"), "-o", str(run),
                 "--data", str(toy_data), "data.speech_dirs=[speech]", "data.noise_dirs=[noise]", "data.num_workers=0"]) == 2
    assert "did you mean deepfilternet3?" in _error(capsys) and not run.exists()


def test_output_named_like_an_audio_file_is_refused(model_file, tmp_path, capsys):
    sf.write(tmp_path / "a.wav", _speechlike(16000, 0.3), 16000)
    for name in ("enhanced.wav", "out.FLAC", "x.mp3"):
        assert main(["enhance", str(tmp_path / "a.wav"), "-o", str(tmp_path / name), "--model", str(model_file)]) == 2
        assert "-o is the output folder" in _error(capsys) and not (tmp_path / name).exists()


STARTUP = """
import sys
from mal.cli import main
code = main(sys.argv[1:])
print("TORCH", "torch" in sys.modules, "CODE", code)
"""


def test_missing_input_is_refused_before_any_work(tmp_path):
    """A missing input (among good ones) stops the run before torch loads and before any output."""
    sf.write(tmp_path / "a.wav", _speechlike(16000, 0.3), 16000)
    args = ["enhance", str(tmp_path / "a.wav"), str(tmp_path / "nothere") + "/", "-o", str(tmp_path / "o1")]
    proc = subprocess.run([sys.executable, "-c", STARTUP, *args], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "TORCH False CODE 2" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stderr.strip() == f"mal: error: {tmp_path / 'nothere'}/: no such file or folder"
    assert not (tmp_path / "o1").exists()
