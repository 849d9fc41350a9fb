"""Reliability: bad and odd audio through enhance/evaluate/train, interrupted work, limits.

One test per row of docs/robustness.md. Every audio row runs the three commands on the same
kind of file: `mal enhance` and `mal evaluate` through the CLI, `mal train` through the CLI
where it must fail before any work, else through its data pipeline and one training step
(plus one real training run, ``odd_training_run``, over all the odd-but-valid files).
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from mal.audio import list_audio, read_audio, readable_extensions, resample, soft_limit
from mal.cli import main
from mal.data import MixtureDataset, read_segment
from mal.inference import expand_inputs, load_model, save_model
from mal.evaluation.metrics import runner
from mal.evaluation.metrics.intrusive import si_sdr
from mal.models import build_model

RATE = 16000
TINY = {"preset": "deepfilternet_16k", "conv_ch": 8, "emb_hidden": 32, "df_hidden": 32}
TINY_YAML = "{preset: deepfilternet_16k, conv_ch: 8, emb_hidden: 32, df_hidden: 32}"
# Largest error the output file's sample format allows (quantisation), against the model itself.
TOLERANCE = {"PCM_U8": 2 / 128, "PCM_S8": 2 / 128, "PCM_16": 2e-4, "PCM_24": 1e-5, "FLOAT": 1e-5, "DOUBLE": 1e-5}
MEMORY_SCRIPT = """
import sys
from mal.cli import main
code = main(sys.argv[1:])
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1]
print("PEAK_KB", peak)
sys.exit(code)
"""


# -- audio and folders ------------------------------------------------------------------------
def speech(rate: int = RATE, seconds: float = 1.0, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Voiced bursts plus a little noise; (n,) or (n, channels) with a different mix per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(max(int(round(rate * seconds)), 1)) / rate
    x = 0.3 * (np.sin(2 * np.pi * 3 * t) > 0) * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(len(t))
    if channels == 1:
        return x.astype(np.float32)
    return np.stack([x * (1 - 0.1 * c) + 0.02 * rng.standard_normal(len(t)) for c in range(channels)], 1).astype(np.float32)


def write(path: Path, samples: np.ndarray, rate: int = RATE, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, rate, subtype=subtype)
    return path


def write_long(path: Path, minutes: float) -> Path:
    """A 16 kHz PCM_16 file of ``minutes``, written block by block."""
    rng = np.random.default_rng(1)
    block = (0.1 * rng.standard_normal(RATE * 60)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:
        remaining = int(minutes * 60 * RATE)
        while remaining > 0:
            f.write(block[:remaining])
            remaining -= min(remaining, len(block))
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.ckpt"
    save_model(build_model(TINY).eval(), path)
    return path


@pytest.fixture(scope="module")
def model(model_file):
    return load_model(model_file)


def reference_enhance(model, x: np.ndarray, rate: int) -> np.ndarray:
    """What the output must be: each channel resampled, through the whole model once, back."""
    x = x[:, None] if x.ndim == 1 else x
    out = []
    for c in range(x.shape[1]):
        y = resample(x[:, c], rate, model.sample_rate)
        with torch.no_grad():
            y = model(torch.from_numpy(np.ascontiguousarray(y))[None])[0].numpy()
        y = resample(y, model.sample_rate, rate)
        out.append(np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)])
    return np.stack(out, 1)


# -- the three commands -------------------------------------------------------------------------
def run_enhance(model_file: Path, inputs: list[Path], out: Path, capsys, *extra: str) -> tuple[int, list[str]]:
    """Exit code and message lines (stdout, then stderr without progress bars)."""
    code = main(["enhance", *map(str, inputs), "-o", str(out), "--model", str(model_file), *extra])
    captured = capsys.readouterr()
    return code, _message_lines(captured.out) + _message_lines(captured.err)


def run_evaluate(clean: Path, enhanced: Path, out: Path, capsys, metrics: str = "sisdr") -> tuple[int, list[str], dict]:
    code = main(["evaluate", "--clean", str(clean), "--enhanced", str(enhanced), "-o", str(out),
                 "--metrics", metrics, "--quiet", "--no-cache"])
    err = _message_lines(capsys.readouterr().err)
    rows = {}
    if (out / "per_file.csv").is_file():
        with open(out / "per_file.csv") as f:
            rows = {row["file"]: row for row in csv.DictReader(f)}
    return code, err, rows


def train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["-o", str(out), "--data", str(root), f"model={TINY_YAML}", "data.speech_dirs=[speech]",
            "data.noise_dirs=[noise]", "data.segment_seconds=0.5", "data.batch_size=4", "data.train_size=16",
            "data.val_size=4", "data.num_workers=0", "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
            "trainer.threads=1", *extra]


def _message_lines(err: str) -> list[str]:
    """stderr without progress bars."""
    return [line for line in re.split(r"[\r\n]", err) if line.strip() and not re.search(r"\d+/\d+ \[", line)]


def lines_naming(lines: list[str], path: Path) -> list[str]:
    return [line for line in lines if path.name in line]


def data_root(tmp_path: Path, toy_data: Path, speech_files: dict[str, tuple] = {}, noise_files: dict[str, tuple] = {}) -> Path:
    """toy_data's speech and noise (linked) plus extra files ``{name: (samples, rate, subtype)}``."""
    root = tmp_path / "data"
    for kind, extra in (("speech", speech_files), ("noise", noise_files)):
        (root / kind).mkdir(parents=True)
        for src in sorted((toy_data / kind).iterdir()):
            (root / kind / src.name).symlink_to(src)
        for name, spec in extra.items():
            if isinstance(spec, bytes):
                (root / kind / name).write_bytes(spec)
            else:
                write(root / kind / name, *spec)
    return root


def assert_train_fails_before_work(root: Path, tmp_path: Path, capsys, bad: Path, problem: str) -> None:
    out = tmp_path / "run"
    assert main(["train", *train_args(root, out)]) == 2
    lines = _message_lines(capsys.readouterr().err)
    errors = [line for line in lines if line.startswith("mal: error:")]
    assert len(errors) == 1 and bad.name in errors[0] and problem in errors[0], lines
    assert "data.speech_dirs" in errors[0]
    assert not (out / "checkpoints").exists() and not (out / "config.yaml").exists()


def assert_trains_on(speech_file: Path, noise_file: Path) -> None:
    """Mixtures from these files are finite and in range; a training step has finite loss and gradients."""
    from mal.training.config import load_config
    from mal.training import EnhancementTask

    data = MixtureDataset([speech_file], [noise_file], sample_rate=RATE, segment_seconds=0.5, epoch_size=4)
    noisy, clean = map(torch.stack, zip(*(data[i] for i in range(4))))
    assert noisy.shape == (4, RATE // 2) and torch.isfinite(noisy).all() and torch.isfinite(clean).all()
    assert noisy.abs().max() <= 0.99 + 1e-6
    torch.manual_seed(0)
    task = EnhancementTask(load_config(None, [f"model={TINY_YAML}"]))
    loss, _, _ = task.compute_losses(noisy, clean)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in task.parameters() if p.grad is not None)


def assert_enhanced_like_model(model, src: Path, dst: Path) -> None:
    """Same rate, length, channels and sample format; samples equal the model's output."""
    a, b = sf.info(str(src)), sf.info(str(dst))
    assert (b.samplerate, b.frames, b.channels, b.subtype) == (a.samplerate, a.frames, a.channels, a.subtype)
    x, _ = sf.read(str(src), dtype="float32", always_2d=True)
    y, _ = sf.read(str(dst), dtype="float32", always_2d=True)
    assert np.isfinite(y).all()
    expected = reference_enhance(model, x, a.samplerate)
    if a.subtype.startswith("PCM"):
        expected = soft_limit(expected)[0]  # peaks bent below full scale, not clipped
    np.testing.assert_allclose(y, expected, atol=TOLERANCE[a.subtype])


# -- audio input rows ---------------------------------------------------------------------------
def test_missing_file(model_file, tmp_path, capsys, toy_data):
    good = write(tmp_path / "in" / "good.wav", speech())
    missing = tmp_path / "in" / "missing.wav"
    code, err = run_enhance(model_file, [good, missing], tmp_path / "out", capsys)
    assert code == 2 and err == [f"mal: error: {missing}: no such file or folder"]  # before any work
    assert not (tmp_path / "out").exists()
    # evaluate: a missing folder is a one-line error; a file without its reference is named and skipped
    code, err, _ = run_evaluate(tmp_path / "no-clean", tmp_path / "in", tmp_path / "ev", capsys)
    assert code == 2 and err == [f"mal: error: {tmp_path / 'no-clean'}: not a directory"]
    write(tmp_path / "clean" / "good.wav", speech())
    write(tmp_path / "enh" / "good.wav", speech())
    write(tmp_path / "enh" / "orphan.wav", speech())
    code, err, rows = run_evaluate(tmp_path / "clean", tmp_path / "enh", tmp_path / "ev2", capsys)
    assert code == 0 and list(rows) == ["good"] and any("orphan.wav" in line and "without a clean reference" in line for line in err)
    # train: a file listed in the run's split that has since disappeared
    root = data_root(tmp_path, toy_data, speech_files={"gone_0.wav": (speech(),)})
    from mal.training.config import load_config
    from mal.training.datamodule import make_split

    make_split(load_config(None, [f"output_dir={tmp_path / 'run'}", f"data.root={root}", "data.speech_dirs=[speech]", "data.noise_dirs=[noise]"]))
    (root / "speech" / "gone_0.wav").unlink()
    out = tmp_path / "run"
    assert main(["train", *train_args(root, out)]) == 2
    error = _message_lines(capsys.readouterr().err)[-1]
    assert error.startswith("mal: error: data.speech_dirs:") and "gone_0.wav: file not found" in error


def test_directory_with_no_audio(model_file, tmp_path, capsys, toy_data):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    code, err = run_enhance(model_file, [empty], tmp_path / "out", capsys)
    listed = ", ".join(readable_extensions())  # every container libsndfile reads, mp3 included
    assert code == 2 and err[-1:] == [f"mal: error: {empty}: directory contains no audio files ({listed})"]
    write(tmp_path / "clean" / "a.wav", speech())
    code, err, _ = run_evaluate(tmp_path / "clean", empty, tmp_path / "ev", capsys)
    assert code == 2 and err == [f"mal: error: {empty}: directory contains no audio files (.wav, .flac, .ogg)"]
    root = data_root(tmp_path, toy_data)
    shutil.rmtree(root / "speech")
    (root / "speech").mkdir()
    (root / "speech" / "notes.txt").write_text("no audio here")
    assert main(["train", *train_args(root, tmp_path / "run")]) == 2
    assert _message_lines(capsys.readouterr().err) == [f"mal: error: data.speech_dirs: no audio files found in {root / 'speech'}"]


BAD_FILES = {  # row -> {file name: bytes or (samples, rate, subtype)}, the problem named in the error
    "zero_length": ({"empty.wav": b"", "no_frames.wav": (np.zeros(0, np.float32), RATE, "PCM_16")}, ("cannot read audio", "file has no samples")),
    "corrupt_header": ({"header.wav": None}, ("cannot read audio",)),
    "not_audio": ({"text.wav": b"just some text, not audio\n" * 40, "text.flac": b"%PDF-1.4 not a flac"}, ("cannot read audio",)),
    "nan_inf": ({"nan.wav": "nan", "inf.wav": "inf", "huge.wav": "huge"},
                ("contains NaN or infinite samples", "(a damaged floating-point file)")),
}


def _bad_file_specs(row: str) -> dict:
    specs = {}
    for name, spec in BAD_FILES[row][0].items():
        if row == "corrupt_header":  # a real WAV header, cut short in its fmt chunk
            buffer = io.BytesIO()
            sf.write(buffer, speech(), RATE, format="WAV", subtype="PCM_16")
            spec = buffer.getvalue()[:30]
        elif spec in ("nan", "inf", "huge"):
            x = speech()
            x[100] = {"nan": np.nan, "inf": np.inf, "huge": 8e21}[spec]  # huge: a flipped exponent byte
            spec = (x, RATE, "FLOAT")
        specs[name] = spec
    return specs


@pytest.mark.parametrize("row", list(BAD_FILES))
def test_unreadable_file(row, model_file, tmp_path, capsys, toy_data):
    """zero-length, truncated/corrupt header, non-audio with an audio extension, NaN/Inf samples."""
    specs, problems = _bad_file_specs(row), BAD_FILES[row][1]
    src = tmp_path / "in"
    for name, spec in specs.items():
        if isinstance(spec, bytes):
            src.mkdir(exist_ok=True)
            (src / name).write_bytes(spec)
        else:
            write(src / name, *spec)
    write(src / "good.wav", speech())
    # enhance: each bad file named once with its problem, the good one written, exit 1, nothing half-done
    out = tmp_path / "out"
    code, err = run_enhance(model_file, [src], out, capsys)
    assert code == 1 and f"{len(specs)} file(s) failed:" in err
    for name in specs:
        named = lines_naming(err, src / name)
        assert len(named) == 1 and any(p in named[0] for p in problems), err
    assert sorted(p.name for p in out.iterdir()) == ["good.wav"]  # no outputs, no .part files
    # evaluate: the same files as enhanced outputs (their references are fine)
    for name in specs:
        write(tmp_path / "clean" / name, speech())
    write(tmp_path / "clean" / "good.wav", speech())
    code, err, rows = run_evaluate(tmp_path / "clean", src, tmp_path / "ev", capsys)
    assert code == 1 and list(rows) == ["good"] and f"mal: {len(specs)} file(s) could not be scored:" in err
    for name in specs:
        assert any(p in line for line in lines_naming(err, src / name) for p in problems)
    # train: fails before any work, naming the key, the file and the problem
    name, spec = next(iter(specs.items()))
    root = data_root(tmp_path, toy_data, speech_files={name: spec})
    assert_train_fails_before_work(root, tmp_path, capsys, root / "speech" / name, problems[0])


def test_truncated_data_is_read_as_far_as_it_goes(model, model_file, tmp_path, capsys):
    """A WAV whose data chunk was cut (a copy interrupted): the samples that are there, and a
    warning naming the file and how much is missing (libsndfile reads it without a word)."""
    full = write(tmp_path / "full.wav", speech(seconds=1.0))
    raw = full.read_bytes()
    src = tmp_path / "in" / "cut.wav"
    src.parent.mkdir()
    src.write_bytes(raw[: len(raw) // 2 + 1])  # header says 16000 frames, about 8000 are there
    frames = sf.info(str(src)).frames
    assert 7900 < frames < 8100
    code, err = run_enhance(model_file, [src, full], tmp_path / "out", capsys)
    assert code == 0
    assert lines_naming(err, src) == [f"mal: warning: {src} is cut short: its header declares {16000 - frames} more frames "
                                      f"({(16000 - frames) / RATE:.2f} s) than the file holds; enhanced what is there"]
    assert not lines_naming(err, full)
    assert_enhanced_like_model(model, src, tmp_path / "out" / "cut.wav")


def test_shorter_than_one_stft_frame(model, model_file, tmp_path, capsys, toy_data):
    frame = model.window_samples
    assert frame == 320
    src = tmp_path / "in"
    files = {"s1.wav": speech(seconds=1 / RATE), "s80.wav": speech(seconds=80 / RATE), "s319.wav": speech(seconds=319 / RATE)}
    for name, x in files.items():
        write(src / name, x)
    code, _ = run_enhance(model_file, [src], tmp_path / "out", capsys)
    assert code == 0
    for name in files:
        assert_enhanced_like_model(model, src / name, tmp_path / "out" / name)
    # evaluate: SI-SDR is defined; PESQ and STOI are not, and the note says why
    clean = tmp_path / "clean"
    for name, x in files.items():
        write(clean / name, x)
    code, err, rows = run_evaluate(clean, tmp_path / "out", tmp_path / "ev", capsys, metrics="sisdr,pesq,stoi")
    assert code == 0 and sorted(rows) == ["s1", "s319", "s80"]
    row = rows["s80"]
    assert float(row["SI-SDR"]) > 0 and np.isnan(float(row["WB-PESQ"]))
    assert "pesq undefined: 0.005 s file, needs 0.250 s" in row["notes"] and "stoi undefined" in row["notes"]
    # train: a short speech file is padded into the segment
    assert_trains_on(write(tmp_path / "short_0.wav", files["s80.wav"]), toy_data / "noise" / "n0.wav")
    segment = read_segment(tmp_path / "short_0.wav", 0, 400, RATE)
    np.testing.assert_allclose(segment[:80], files["s80.wav"], atol=1e-4)
    assert not segment[80:].any()


def test_clipped_full_scale_noise(model, model_file, tmp_path, capsys, toy_data):
    rng = np.random.default_rng(0)
    x = np.sign(rng.standard_normal(RATE)).astype(np.float32)  # every sample at +-1
    src = write(tmp_path / "in" / "clipped.wav", x)
    write(tmp_path / "in" / "clipped_float.wav", 1.5 * x, subtype="FLOAT")  # beyond full scale
    code, _ = run_enhance(model_file, [tmp_path / "in"], tmp_path / "out", capsys)
    assert code == 0
    assert_enhanced_like_model(model, src, tmp_path / "out" / "clipped.wav")
    assert_enhanced_like_model(model, tmp_path / "in" / "clipped_float.wav", tmp_path / "out" / "clipped_float.wav")
    y, _ = read_audio(tmp_path / "out" / "clipped.wav")
    assert np.abs(y).max() <= 1.0
    write(tmp_path / "clean" / "clipped.wav", x)
    code, _, rows = run_evaluate(tmp_path / "clean", tmp_path / "in", tmp_path / "ev", capsys)
    assert code == 0 and float(rows["clipped"]["SI-SDR"]) > 40  # identical files
    assert_trains_on(toy_data / "speech" / "s0_0.wav", src)


def test_silence(model_file, tmp_path, capsys, toy_data):
    silent = write(tmp_path / "in" / "silence.wav", np.zeros(RATE, np.float32))
    write(tmp_path / "in" / "silence_float.wav", np.zeros(RATE, np.float32), subtype="FLOAT")
    code, _ = run_enhance(model_file, [tmp_path / "in"], tmp_path / "out", capsys)
    assert code == 0
    for name in ("silence.wav", "silence_float.wav"):
        y, _ = read_audio(tmp_path / "out" / name)
        assert len(y) == RATE and np.isfinite(y).all() and np.abs(y).max() < 1e-3
    # evaluate: intrusive metrics against or of a silent signal are 0/0: NaN and a note saying so,
    # not a fake 0 dB SI-SDR or PESQ's internal error
    write(tmp_path / "clean" / "silence.wav", np.zeros(RATE, np.float32))
    write(tmp_path / "clean" / "silence_float.wav", speech())
    code, err, rows = run_evaluate(tmp_path / "clean", tmp_path / "in", tmp_path / "ev", capsys, metrics="sisdr,pesq")
    assert code == 0
    for name, which in (("silence", "clean reference"), ("silence_float", "processed file")):
        assert np.isnan(float(rows[name]["SI-SDR"])) and np.isnan(float(rows[name]["WB-PESQ"]))
        assert rows[name]["notes"] == f"sisdr undefined: the {which} is silent; pesq undefined: the {which} is silent"
        assert any(line.startswith("mal: warning:") and f"{name}.wav" in line for line in err)
    # train: silent speech and silent noise give finite losses and gradients (no 0/0, no sqrt(0)')
    assert_trains_on(silent, toy_data / "noise" / "n0.wav")
    assert_trains_on(toy_data / "speech" / "s0_0.wav", silent)
    assert_trains_on(silent, silent)


@pytest.mark.parametrize("rate", [8000, 44100, 96000])
def test_sample_rates(rate, model, model_file, tmp_path, capsys, toy_data):
    x = speech(rate, 0.7)
    src = write(tmp_path / "in" / f"r{rate}.wav", x, rate)
    code, _ = run_enhance(model_file, [src], tmp_path / "out", capsys)
    assert code == 0
    assert_enhanced_like_model(model, src, tmp_path / "out" / src.name)
    # evaluate at the file's own rate: the score is the metric of the two files as they are
    noisy = (x + 0.05 * np.random.default_rng(1).standard_normal(len(x))).astype(np.float32)
    write(tmp_path / "clean" / src.name, x, rate)
    write(tmp_path / "enh" / src.name, noisy, rate)
    code, _, rows = run_evaluate(tmp_path / "clean", tmp_path / "enh", tmp_path / "ev", capsys, metrics="sisdr,stoi")
    expected = si_sdr(read_audio(tmp_path / "clean" / src.name)[0], read_audio(tmp_path / "enh" / src.name)[0])
    assert code == 0 and float(rows[src.stem]["SI-SDR"]) == pytest.approx(expected, abs=1e-4)
    assert 0.5 < float(rows[src.stem]["STOI"]) <= 1.0
    # train: read at the training rate
    whole = resample(read_audio(src)[0], rate, RATE)
    for start in (0, 1234, 3000):  # a crop equals the same stretch of the whole file resampled
        np.testing.assert_allclose(read_segment(src, start, 8000, RATE), whole[start : start + 8000], atol=1e-5)
    assert_trains_on(src, src)


@pytest.mark.parametrize("channels", [2, 6])
def test_stereo_and_six_channels(channels, model, model_file, tmp_path, capsys, toy_data):
    x = speech(RATE, 0.6, channels)
    src = write(tmp_path / "in" / f"ch{channels}.wav", x)
    code, _ = run_enhance(model_file, [src], tmp_path / "out", capsys)
    assert code == 0
    assert_enhanced_like_model(model, src, tmp_path / "out" / src.name)  # every channel on its own
    # evaluate and train use the channel mean
    write(tmp_path / "clean" / src.name, x.mean(axis=1))
    code, _, rows = run_evaluate(tmp_path / "clean", tmp_path / "in", tmp_path / "ev", capsys)
    assert code == 0 and float(rows[src.stem]["SI-SDR"]) > 40
    np.testing.assert_allclose(read_segment(src, 0, 4000, RATE), x.mean(axis=1)[:4000], atol=1e-4)
    assert_trains_on(src, src)


@pytest.mark.parametrize("name,subtype", [("u8.wav", "PCM_U8"), ("s8.flac", "PCM_S8"), ("s24.wav", "PCM_24"),
                                          ("s24.flac", "PCM_24"), ("f32.wav", "FLOAT"), ("f64.wav", "DOUBLE")])
def test_8bit_24bit_and_float_files(name, subtype, model, model_file, tmp_path, capsys, toy_data):
    x = speech(RATE, 0.6)
    src = write(tmp_path / "in" / name, x, subtype=subtype)
    code, _ = run_enhance(model_file, [src], tmp_path / "out", capsys)
    assert code == 0
    assert_enhanced_like_model(model, src, tmp_path / "out" / name)  # also checks the sample format is kept
    write(tmp_path / "clean" / f"{src.stem}.wav", x, subtype="FLOAT")
    code, _, rows = run_evaluate(tmp_path / "clean", tmp_path / "in", tmp_path / "ev", capsys)
    assert code == 0 and float(rows[src.stem]["SI-SDR"]) > (25 if "8" in subtype else 40)  # 8 bits: ~40 dB SNR at best
    np.testing.assert_allclose(read_segment(src, 0, 4000, RATE), x[:4000], atol=TOLERANCE[subtype])
    assert_trains_on(src, src)


def _peak_mb(args: list[str]) -> float:
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(re.search(r"PEAK_KB (\d+)", proc.stdout).group(1)) / 1024


def test_one_hour_file(model_file, tmp_path, toy_data):
    """Peak memory of `mal enhance` / `mal evaluate` in a fresh process, a 2- and a 10-minute file.

    The suite cannot afford an hour of audio per run: it shows memory does not grow with
    length (enhance) or grows only by the two signals a whole-file metric needs (evaluate).
    benchmarks/bench_speed.py --memory-hours 1 measures the one-hour file (docs/robustness.md).
    """
    peaks = {}
    for minutes in (2, 10):
        src = write_long(tmp_path / f"in{minutes}" / "long.wav", minutes)
        out = tmp_path / f"out{minutes}"
        peaks["enhance", minutes] = _peak_mb(["enhance", str(src), "-o", str(out), "--model", str(model_file), "--threads", "1"])
        assert sf.info(str(out / "long.wav")).frames == minutes * 60 * RATE
        peaks["evaluate", minutes] = _peak_mb(["evaluate", "--clean", str(src.parent), "--enhanced", str(out),
                                               "-o", str(tmp_path / f"ev{minutes}"), "--metrics", "sisdr", "--quiet"])
    extra_samples = 8 * 60 * RATE
    assert peaks["enhance", 10] - peaks["enhance", 2] < 50, peaks  # whole-file reading added ~105 MB
    assert peaks["enhance", 10] < 1024, peaks
    # whole-file metrics hold both signals as float32 (8 bytes per sample); before: ~55 bytes
    assert peaks["evaluate", 10] - peaks["evaluate", 2] < 1.5 * 8 * extra_samples / 2**20, peaks
    # train reads only the crops it mixes, so even the hour-long file costs nothing
    hour = write_long(tmp_path / "noise" / "hour.wav", 60)
    data = MixtureDataset([toy_data / "speech" / "s0_0.wav"], [hour], sample_rate=RATE, segment_seconds=0.5, epoch_size=8)
    tracemalloc.start()
    try:
        mixtures = [data[i] for i in range(8)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20 and all(torch.isfinite(noisy).all() for noisy, _ in mixtures)


@pytest.fixture(scope="module")
def odd_training_run(toy_data, tmp_path_factory) -> Path:
    """`mal train` for one epoch on toy data plus every odd-but-valid file, as speech and as noise."""
    root = tmp_path_factory.mktemp("odd")
    odd = {
        "short_1.wav": (speech(seconds=80 / RATE), RATE, None), "clipped_1.wav": (np.sign(speech()) * 1.0, RATE, None),
        "silence_1.wav": (np.zeros(RATE, np.float32), RATE, None), "r8k_1.wav": (speech(8000), 8000, None),
        "r44k_1.wav": (speech(44100), 44100, None), "r96k_1.flac": (speech(96000), 96000, None),
        "stereo_1.wav": (speech(channels=2), RATE, None), "six_1.wav": (speech(channels=6), RATE, None),
        "u8_1.wav": (speech(), RATE, "PCM_U8"), "s24_1.flac": (speech(), RATE, "PCM_24"), "f64_1.wav": (speech(), RATE, "DOUBLE"),
    }
    data = data_root(root, toy_data, speech_files=odd, noise_files=odd)
    write_long(data / "noise" / "hour.wav", 60)
    out = root / "run"
    assert main(["train", *train_args(data, out, "data.train_size=24", "--max-epochs", "1")]) == 0
    return out


def test_odd_files_train_end_to_end(odd_training_run):
    ckpt = torch.load(odd_training_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


# -- outputs ------------------------------------------------------------------------------------
def test_never_overwrites_an_input(model_file, tmp_path, capsys):
    src = tmp_path / "in"
    a = write(src / "a.wav", speech())
    before = a.read_bytes()
    advice = (f"mal: error: {src}: output folder is the input folder {src}; pass --suffix _enhanced to write "
              "NAME_enhanced.wav beside each input, or choose another -o folder")
    for extra in ((), ("--overwrite",)):  # --overwrite cannot help: every output would be its own input
        code, err = run_enhance(model_file, [src], src, capsys, *extra)
        assert code == 2 and err == [advice]
    # a file is never written over itself
    code, err = run_enhance(model_file, [a], src, capsys, "--overwrite")
    assert code == 1 and a.read_bytes() == before and sorted(p.name for p in src.iterdir()) == ["a.wav"]
    # evaluate: equal to, inside, or holding an input folder
    write(tmp_path / "clean" / "a.wav", speech())
    for out in (src, src / "sub", tmp_path):
        code, err, _ = run_evaluate(tmp_path / "clean", src, out, capsys)
        assert code == 2 and "would overwrite input folder" in err[-1]
    assert sorted(p.name for p in src.iterdir()) == ["a.wav"] and a.read_bytes() == before


def test_failed_write_keeps_the_previous_output(model_file, tmp_path, capsys):
    """Atomic outputs: a file that fails half-way (NaN after 24 s) leaves the old output, and no temp file."""
    x = speech(RATE, 25.0)
    src = write(tmp_path / "in" / "a.wav", x, subtype="FLOAT")
    out = tmp_path / "out"
    assert run_enhance(model_file, [src], out, capsys, "--chunk-seconds", "5")[0] == 0
    before = (out / "a.wav").read_bytes()
    x[24 * RATE] = np.nan
    write(src, x, subtype="FLOAT")
    code, err = run_enhance(model_file, [src], out, capsys, "--chunk-seconds", "5", "--overwrite")
    assert code == 1 and "contains NaN or infinite samples" in lines_naming(err, src)[0]
    assert (out / "a.wav").read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["a.wav"]


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"finished before it could be interrupted (exit {process.returncode})"
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.005)


def test_killed_enhance_leaves_no_partial_file_and_resumes(model_file, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    for name, seconds in (("a.wav", 2), ("b.wav", 2), ("m_long.wav", 300), ("z.wav", 2)):
        write(src / name, speech(RATE, seconds, seed=len(name) + seconds))
    cmd = [sys.executable, "-m", "mal", "enhance", str(src), "-o", str(out), "--model", str(model_file),
           "--chunk-seconds", "5", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        parts = lambda: [p for p in out.glob(".m_long.wav.*.part") if p.stat().st_size > 200_000]  # noqa: E731
        _wait_for(lambda: out.is_dir() and parts(), proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # what is visible is complete; the half-written file is a hidden .part no listing picks up
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["a.wav", "b.wav"]
    assert [p.name for p in list_audio(out)] == ["a.wav", "b.wav"] and len(expand_inputs([out])) == 2
    for name in ("a.wav", "b.wav"):
        assert sf.info(str(out / name)).frames == sf.info(str(src / name)).frames
    done = {name: (out / name).stat().st_mtime_ns for name in ("a.wav", "b.wav")}
    # the rerun skips what is done, drops the stale .part, and finishes
    code, err = run_enhance(model_file, [src], out, capsys, "--chunk-seconds", "5")
    assert code == 0 and "2 already there (skipped)" in " ".join(err)
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav", "m_long.wav", "z.wav"]
    assert {name: (out / name).stat().st_mtime_ns for name in done} == done
    assert run_enhance(model_file, [src], tmp_path / "whole", capsys, "--chunk-seconds", "5")[0] == 0
    for name in ("m_long.wav", "z.wav"):
        np.testing.assert_array_equal(sf.read(str(out / name))[0], sf.read(str(tmp_path / "whole" / name))[0])


def test_killed_evaluate_keeps_a_sound_cache_and_resumes(tmp_path, capsys, monkeypatch):
    clean, enhanced, out = tmp_path / "clean", tmp_path / "enh", tmp_path / "ev"
    rng = np.random.default_rng(0)
    n_files = 40
    for i in range(n_files):
        x = speech(RATE, 1.0, seed=i)
        write(clean / f"u{i:02d}.wav", x)
        write(enhanced / f"u{i:02d}.wav", (x + 0.05 * rng.standard_normal(len(x))).astype(np.float32))
    args = ["evaluate", "--clean", str(clean), "--enhanced", str(enhanced), "--metrics", "sisdr,stoi,pesq", "--quiet"]
    cache = out / "cache" / "scores.sqlite"

    def cached_rows() -> int:
        try:
            with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=0.05) as db:
                return db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        except sqlite3.Error:
            return 0

    proc = subprocess.Popen([sys.executable, "-m", "mal", *args, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: cache.is_file() and cached_rows() >= 20, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "per_file.csv").exists() and not (out / "summary.json").exists()  # written at the end, atomically
    with sqlite3.connect(cache) as db:  # a kill mid-transaction is rolled back on the next open
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        done = db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    assert 20 <= done < 4 * n_files  # 4 entries per file: 3 groups and the file info
    calls = []
    real = runner.compute_group
    monkeypatch.setattr(runner, "compute_group", lambda g, *a: calls.append(g) or real(g, *a))
    assert main([*args, "-o", str(out)]) == 0
    assert 0 < len(calls) < 3 * n_files  # resumed: only what the killed run had not stored
    assert main([*args, "-o", str(tmp_path / "whole"), "--no-cache"]) == 0
    capsys.readouterr()
    resumed, whole = ((tmp_path / d / "per_file.csv").read_text() for d in ("ev", "whole"))
    assert resumed.replace(str(out), "") == whole.replace(str(tmp_path / "whole"), "")


# -- training -----------------------------------------------------------------------------------
# `python -m mal`, plus a probe that prints each finished training step and holds the process
# after step 3 of epoch 1 (the second of three), so that kill -9 lands mid-epoch on any machine.
HOLD_MID_EPOCH = """
import sys, time
from mal.training.task import EnhancementTask
original = EnhancementTask.on_train_batch_end
def probe(self, outputs, batch, batch_idx):
    original(self, outputs, batch, batch_idx)
    print(f"STEP {self.current_epoch} {batch_idx}", flush=True)
    if (self.current_epoch, batch_idx) == (1, 3):
        time.sleep(600)
EnhancementTask.on_train_batch_end = probe
from mal.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _finetune_args(stage1: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--from", str(stage1), *extra, *train_args(root, out, "data.train_size=48", "optim.warmup_steps=0",
            "finetune.variant=mal-dynamic", "trainer.max_epochs=3")]


@pytest.fixture(scope="module")
def stage1_run(toy_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stage1") / "run"
    assert main(["train", *train_args(toy_data, out, "--max-epochs", "1")]) == 0
    return out


def test_kill_9_then_resume_equals_an_uninterrupted_run(stage1_run, toy_data, tmp_path):
    """Stage 2 (mal-dynamic): optimiser state, data order and the MAL snapshot all continue exactly."""
    stage1 = stage1_run / "checkpoints" / "last.ckpt"
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert main(_finetune_args(stage1, toy_data, reference)) == 0
    log = tmp_path / "killed.log"
    with open(log, "w") as stdout:
        proc = subprocess.Popen([sys.executable, "-c", HOLD_MID_EPOCH, *_finetune_args(stage1, toy_data, killed)],
                                stdout=stdout, stderr=subprocess.DEVNULL)
        try:
            _wait_for(lambda: "STEP 1 3" in log.read_text(), proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    last = killed / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 12  # the checkpoint of epoch 0: killed mid-epoch 1
    assert main(_finetune_args(stage1, toy_data, killed, "--resume")) == 0
    a, b = (torch.load(p / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False) for p in (reference, killed))
    assert a["global_step"] == b["global_step"] == 36
    assert a["state_dict"].keys() == b["state_dict"].keys() and any(k.startswith("mal_loss.snapshot.") for k in a["state_dict"])
    for key in a["state_dict"]:  # weights, BatchNorm statistics, the MAL snapshot and its refresh count
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for state_a, state_b in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert a["lr_schedulers"] == b["lr_schedulers"]


def test_same_config_gives_the_same_run(toy_data, tmp_path):
    """What makes a resumed run comparable with an uninterrupted one: weights depend on the config's
    seed only, not on the random state the process had before (the model was built before seeding)."""
    states = []
    for i in range(2):
        torch.manual_seed(100 + i)
        torch.rand(10 * i)
        out = tmp_path / f"run{i}"
        assert main(["train", *train_args(toy_data, out, "--max-epochs", "1")]) == 0
        states.append(torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_checkpoints_are_written_atomically(stage1_run, toy_data, tmp_path, monkeypatch):
    """A save that crashes half-way, or a kill -9 during a save, leaves the previous last.ckpt."""
    from mal.training.run import AtomicCheckpointIO

    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)

    def crash(obj, f, *args, **kwargs):
        Path(f).write_bytes(before[: len(before) // 2])  # half a checkpoint on disk, then the failure
        raise OSError("No space left on device (simulated)")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", crash)
        with pytest.raises(OSError, match="simulated"):
            AtomicCheckpointIO().save_checkpoint(checkpoint, last)
    assert last.read_bytes() == before and sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]
    # kill -9 while a (large) checkpoint is being written
    script = ("import sys, torch; from mal.training.run import AtomicCheckpointIO\n"
              "ckpt = torch.load(sys.argv[1], weights_only=False); ckpt['padding'] = torch.zeros(2**27)\n"
              "while True: AtomicCheckpointIO().save_checkpoint(ckpt, sys.argv[1])\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(last)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: [p for p in last.parent.glob(".last.ckpt.*.part") if p.stat().st_size > 2**20], proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert last.read_bytes() == before
    assert list(last.parent.glob(".last.ckpt.*.part"))  # killed mid-save: only the hidden temporary file
    # resuming ignores and removes it
    assert main(["train", *train_args(toy_data, run, "--max-epochs", "2", "--resume")]) == 0
    assert torch.load(last, weights_only=False)["global_step"] == 8 and not list(last.parent.glob(".*.part"))


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(where, stage1_run, toy_data, tmp_path, monkeypatch, capsys):
    """A NaN loss, or NaN gradients under a finite loss on the epoch's last step (which would reach
    the end-of-epoch checkpoint), stop the run with one line; last.ckpt stays as it was."""
    from mal.losses import DFLoss

    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    real, training_calls = DFLoss.forward, []

    def poisoned(self, enhanced, clean):
        value = real(self, enhanced, clean)
        if torch.is_grad_enabled():
            training_calls.append(1)
            if where == "loss":
                return value * float("nan")
            if len(training_calls) == 4:  # the last of the epoch's 4 steps
                return value + 0.0 * torch.sqrt((enhanced * 0).sum())  # finite value, NaN gradient
        return value

    monkeypatch.setattr(DFLoss, "forward", poisoned)
    assert main(["train", *train_args(toy_data, run, "--max-epochs", "2", "--resume")]) == 2
    # (only mal's lines: Lightning's logging may complain about a stream an earlier test closed)
    errors = [line for line in _message_lines(capsys.readouterr().err) if line.startswith("mal:")]
    assert len(errors) == 1 and errors[0].startswith("mal: error: non-finite"), errors
    assert "lower optim.lr or check the data" in errors[0]
    assert last.read_bytes() == before
    state = torch.load(last, weights_only=False)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize("config,key", [
    ({"trainer": {"max_epochz": 3}}, "trainer.max_epochz"),  # unknown key
    ({"data": {"batch_size": "four"}}, "data.batch_size"),  # wrong type
    ({"data": {"speech_dirs": "speech"}}, "data.speech_dirs"),  # wrong type: a string, not a list
    ({"optim": {"lr": [0.001]}}, "optim.lr"),  # wrong type
    ({"data": {"noise_dirs": ["no-such-folder"]}}, "data.noise_dirs"),  # missing data folder
    ({"finetune": {"variant": "mal-dynamc"}}, "finetune.variant"),  # misspelt variant
    ({"model": {"preset": "deepfilternet_16k", "conv_chh": 8}}, "model.conv_chh"),  # unknown model field
])
def test_bad_config_file_fails_before_work_naming_the_key(config, key, toy_data, tmp_path, capsys):
    """The same checks as tests/test_training.py's overrides, through a YAML file."""
    base = {"data": {"speech_dirs": ["speech"], "noise_dirs": ["noise"], "num_workers": 0}, "model": TINY}
    for section, values in config.items():
        base[section] = values if section == "model" else {**base.get(section, {}), **values}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(base))
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "-o", str(out), "--data", str(toy_data)]) == 2
    lines = _message_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"mal: error: {key}"), lines
    assert not (out / "checkpoints").exists() and not (out / "config.yaml").exists()
