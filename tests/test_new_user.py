"""What a new user hit (issue 16): one-line errors, batches that go on, levels, logs, start-up."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from mal.cli import main
from mal.inference import save_model
from mal.models import build_model

RATE = 16000
TINY = {"preset": "deepfilternet_16k", "conv_ch": 8, "emb_hidden": 32, "df_hidden": 32}
REPO = Path(__file__).resolve().parents[1]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def tone(seconds: float = 0.5, rate: int = RATE, peak: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    return (peak * x / np.abs(x).max()).astype(np.float32)


def write(path: Path, x: np.ndarray, rate: int = RATE, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, rate, **kw)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(build_model(TINY).eval(), path)
    return path


def enhance(model_file: Path, inputs: list[Path], out: Path, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["enhance", *map(str, inputs), "-o", str(out), "--model", str(model_file), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("mal: error:")]


# -- tracebacks that are now one line ----------------------------------------------------------
@NO_CUDA
def test_cuda_device_without_cuda_is_one_line(model_file, tmp_path, capsys):
    code, _, err = enhance(model_file, [write(tmp_path / "a.wav", tone())], tmp_path / "out", capsys, "--device", "cuda:0")
    assert code == 2 and error_lines(err) == [err.strip()] and "--device cuda:0: CUDA is not available" in err


def test_onnx_option_with_a_non_onnx_file_is_one_line(model_file, tmp_path, capsys):
    bad = tmp_path / "notackpt.ckpt"
    bad.write_bytes(np.random.default_rng(0).bytes(4000))
    code, _, err = enhance(model_file, [write(tmp_path / "a.wav", tone())], tmp_path / "out", capsys, "--onnx", str(bad))
    assert code == 2 and err.strip() == error_lines(err)[0] and f"{bad}: not a readable ONNX model" in err


def train_args(toy_data: Path, out: Path) -> list[str]:
    return ["-o", str(out), "--data", str(toy_data), f"model={json.dumps(TINY)}", "data.speech_dirs=[speech]",
            "data.noise_dirs=[noise]", "data.num_workers=0"]


@pytest.mark.parametrize("extra", [["--accelerator", "gpu"], ["--resume"]], ids=["gpu", "resume_empty"])
def test_training_that_fails_at_start_leaves_nothing(toy_data, tmp_path, capsys, extra):
    if extra[0] == "--accelerator" and torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    out = tmp_path / "run"
    assert main(["train", *train_args(toy_data, out), *extra]) == 2
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and ("trainer.accelerator=gpu" in err or "no checkpoint to resume from" in err)
    assert not out.exists()  # no config.yaml, no split.json, no folders
    out.mkdir()  # an existing, empty run folder stays, and stays empty
    assert main(["train", *train_args(toy_data, out), *extra]) == 2
    assert out.is_dir() and list(out.iterdir()) == []


def test_finetune_from_random_bytes_is_one_line(toy_data, tmp_path, capsys):
    bad = tmp_path / "notackpt.ckpt"
    bad.write_bytes(np.random.default_rng(0).bytes(4000))
    out = tmp_path / "run"
    code = main(["finetune", "--from", str(bad), "--config", str(REPO / "configs" / "mal_frozen.yaml"),
                 *train_args(toy_data, out)])
    err = capsys.readouterr().err
    assert code == 2 and error_lines(err) == [f"mal: error: {bad}: not a readable checkpoint (UnpicklingError)"]
    assert not out.exists()


def test_data_folder_error_says_what_the_root_resolved_against(tmp_path, capsys):
    assert main(["train", "--config", str(REPO / "configs" / "baseline.yaml"), "-o", str(tmp_path / "run"),
                 "--data", str(tmp_path / "nowhere")]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "data.speech_dirs: folder not found" in line and f"resolved against the data root {tmp_path / 'nowhere'}" in line
    assert "--data" in line


# -- batches and outputs -----------------------------------------------------------------------
def test_mp3_in_a_batch_is_enhanced_and_an_unwritable_output_fails_alone(model_file, tmp_path, capsys):
    src = tmp_path / "in"
    inputs = [write(src / "a.wav", tone()), write(src / "b.ogg", tone()), write(src / "c.mp3", tone()),
              write(src / "d.wav", tone())]
    out = tmp_path / "out"
    (out / "d.wav").mkdir(parents=True)  # d's output cannot be written
    code, stdout, err = enhance(model_file, inputs, out, capsys, "--overwrite", "--quiet")
    assert code == 1 and "wrote 3 file(s)" in stdout
    failed = [line for line in err.splitlines() if line.startswith("  ")]
    assert len(failed) == 1 and f"{src / 'd.wav'}: cannot write {out / 'd.wav'}" in failed[0] and ".part" not in err
    assert sf.info(str(out / "c.mp3")).format == "MP3" and sf.info(str(out / "b.ogg")).format == "OGG"
    # a folder walk finds the mp3 too
    code, stdout, _ = enhance(model_file, [src], tmp_path / "out2", capsys, "--quiet")
    assert code == 0 and sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["a.wav", "b.ogg", "c.mp3", "d.wav"]


def test_a_container_that_cannot_be_written_falls_back_to_flac(model_file, tmp_path, capsys, monkeypatch):
    import mal.inference.paths

    monkeypatch.setattr(mal.inference.paths, "writable", lambda path: path.suffix != ".mp3")  # as with a libsndfile without LAME
    mp3 = write(tmp_path / "in" / "c.mp3", tone())
    code, _, err = enhance(model_file, [mp3], tmp_path / "out", capsys, "--quiet")
    assert code == 0 and [p.name for p in (tmp_path / "out").iterdir()] == ["c.flac"]
    assert f"{mp3} written as {tmp_path / 'out' / 'c.flac'}" in err


def test_output_beside_the_inputs_with_a_suffix_and_never_into_the_output_folder(model_file, tmp_path, capsys):
    src = tmp_path / "in"
    write(src / "a.wav", tone())
    write(src / "sub" / "b.wav", tone())
    code, _, err = enhance(model_file, [src], src, capsys)
    assert code == 2 and "pass --suffix _enhanced" in err
    for _ in range(2):  # the rerun skips its outputs instead of enhancing them again
        assert enhance(model_file, [src], src, capsys, "--suffix", "_enh", "--quiet")[0] == 0
    assert sorted(str(p.relative_to(src)) for p in src.rglob("*.wav")) == ["a.wav", "a_enh.wav", "sub/b.wav", "sub/b_enh.wav"]
    for _ in range(2):
        assert enhance(model_file, [src], src / "enh", capsys, "--overwrite", "--quiet")[0] == 0
    assert not (src / "enh" / "enh").exists()
    assert sorted(str(p.relative_to(src / "enh")) for p in (src / "enh").rglob("*.wav")) == [
        "a.wav", "a_enh.wav", "sub/b.wav", "sub/b_enh.wav"]


class Louder(torch.nn.Module):
    """A model whose output is 1.5 times its input (what raised clean speech's level)."""

    sample_rate, window_samples, lookahead_samples = RATE, 320, 320

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * x


def test_loud_output_is_limited_not_clipped_and_reported(tmp_path, capsys):
    from mal.inference.batch import enhance_files
    from mal.cli.enhance import print_notes

    x = tone(peak=0.99)
    src = write(tmp_path / "in" / "loud.wav", x, subtype="PCM_16")
    result = enhance_files(Louder(), [src], tmp_path / "out", progress=False)
    y, _ = sf.read(str(tmp_path / "out" / "loud.wav"), dtype="int16")
    assert np.abs(y.astype(int)).max() < 32500  # nothing at full scale (32767): peaks end below 0.99
    quiet = np.abs(x * 1.5) < 0.9  # below the knee the output is the model's, exactly
    np.testing.assert_allclose(y[quiet] / 32768, 1.5 * x[quiet], atol=2e-4)
    over = int(np.count_nonzero(np.abs(1.5 * x) > 1))
    assert result.over_full_scale == [(tmp_path / "out" / "loud.wav", over)] and over > 0
    print_notes(result, RATE)
    assert f"1 output(s) went above full scale: {tmp_path / 'out' / 'loud.wav'} ({over} samples)" in capsys.readouterr().err


def test_wider_band_input_is_noted_once(model_file, tmp_path, capsys):
    files = [write(tmp_path / "in" / f"{n}.wav", tone(rate=48000), rate=48000) for n in ("a", "b")]
    code, _, err = enhance(model_file, [*files, write(tmp_path / "in" / "c.wav", tone())], tmp_path / "out", capsys, "--quiet")
    notes = [line for line in err.splitlines() if "nothing above" in line]
    assert code == 0 and len(notes) == 1
    assert "is 48000 Hz (and 1 more file(s)) but the model works at 16000 Hz: nothing above 8 kHz is kept" in notes[0]
    code, _, err = enhance(model_file, [tmp_path / "in" / "c.wav"], tmp_path / "out2", capsys, "--quiet")
    assert "nothing above" not in err


# -- logs and start-up -------------------------------------------------------------------------
def test_progress_off_a_terminal_is_plain_lines(model_file, tmp_path, capsys):
    files = [write(tmp_path / "in" / f"{n}.wav", tone()) for n in ("a", "b")]
    _, _, err = enhance(model_file, files, tmp_path / "out", capsys)
    assert "\r" not in err and "enhance: 2/2 files (100%)" in err
    _, _, err = enhance(model_file, files, tmp_path / "out2", capsys, "--quiet")
    assert "enhance:" not in err
    code = main(["evaluate", "--clean", str(tmp_path / "in"), "--enhanced", str(tmp_path / "out"), "-o",
                 str(tmp_path / "ev"), "--metrics", "sisdr", "--no-cache"])
    err = capsys.readouterr().err
    assert code == 0 and "scoring: 2/2 files (100%)" in err and "\r" not in err


def test_training_log_is_plain_and_quiet(model_file, toy_data, tmp_path):
    """A stage-2 run logged to a file: no Lightning tips, LeafSpec or FLOPs noise; the snapshot said once."""
    cmd = [sys.executable, "-m", "mal", "finetune", "--from", str(model_file), "--config",
           str(REPO / "configs" / "mal_frozen.yaml"), *train_args(toy_data, tmp_path / "run"), "data.segment_seconds=0.5",
           "data.batch_size=4", "data.train_size=8", "data.val_size=4", "trainer.max_epochs=1", "trainer.threads=1",
           "trainer.log_every_n_steps=50"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    for noise in ("💡", "LeafSpec", "FLOPs", "eval mode at the start", "\r", "GPU available", "TPU available",
                  "logging interval", "Loading `train_dataloader`", "`Trainer.fit` stopped"):
        assert noise not in log, noise
    assert log.count("frozen snapshot") == 1 and "epoch 1/1: train/loss" in log
    assert "epoch 1/1: 2/2 batches (100%)" in log  # progress inside the epoch, as enhance prints it
    # what was trained is recorded: the source and its architecture, not the default preset
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["finetune"]["from"] == str(model_file) and saved["model"]["conv_ch"] == 8
    assert saved["model"] == build_model(TINY).config_dict()
    with open(tmp_path / "run" / "metrics.csv") as f:  # the epoch's mean training loss is a column
        rows = list(csv.DictReader(f))
    assert any(row.get("train/loss_epoch") for row in rows)


def test_finetune_refuses_model_settings_that_cannot_apply(model_file, toy_data, tmp_path, capsys):
    args = ["finetune", "--from", str(model_file), "--config", str(REPO / "configs" / "mal_frozen.yaml"),
            *train_args(toy_data, tmp_path / "run"), "model.conv_ch=16", "trainer.max_epochs=1"]
    assert main(args) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "model.conv_ch=16 (the source has 8)" in err[0] and "cannot apply with --from" in err[0]
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_zero_epochs_names_no_checkpoint(toy_data, tmp_path, capsys):
    assert main(["train", *train_args(toy_data, tmp_path / "run"), "data.train_size=8", "data.val_size=4",
                 "data.segment_seconds=0.5", "--max-epochs", "0"]) == 0
    out = capsys.readouterr().out
    assert "checkpoints:" not in out and "no checkpoint written (trainer.max_epochs=0)" in out
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_config_reference_page_is_generated_and_complete():
    from mal.training.config import DEFAULTS, KEY_HELP, _leaves, reference_markdown

    keys = [key for key, _ in _leaves(DEFAULTS)]
    assert not [k for k in keys if not KEY_HELP.get(k)] and not set(KEY_HELP) - set(keys)
    assert (REPO / "docs" / "config.md").read_text() == reference_markdown(), "run: python -m mal.training.config > docs/config.md"
    for key in ("data.train_size", "data.val_size", "data.segment_seconds", "trainer.max_time", "trainer.limit_train_batches"):
        assert f"| `{key}` |" in reference_markdown() and key.split(".")[1] in reference_markdown().split("## All keys")[0]


STARTUP = """
import sys
from mal.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "lightning", "librosa", "scipy", "pesq") if m in sys.modules)
print("HEAVY", ",".join(heavy), "CODE", code)
"""


@pytest.mark.parametrize("args", [
    ["train", "--config", "configs/baseline.yaml", "--data", "/nonexistent-data-root"],
    ["enhance", "/nonexistent-input-folder/", "-o", "/nonexistent-out/x", "--overwrite"],
], ids=["train_bad_data", "enhance_output_in_input"])
def test_argument_errors_come_before_the_heavy_imports(args, tmp_path):
    if args[0] == "enhance":  # an output folder that is the input folder: refused before torch loads
        write(tmp_path / "in" / "a.wav", tone())
        args = ["enhance", str(tmp_path / "in"), "-o", str(tmp_path / "in")]
    proc = subprocess.run([sys.executable, "-c", STARTUP, *args], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "HEAVY  CODE 2" in proc.stdout, proc.stdout + proc.stderr


def test_version_models_and_what_a_config_trains(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == "mal 0.1.0"
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    rows = {line.split()[0]: line for line in listing.splitlines()[1:-1]}
    assert {"default", "deepfilternet_16k", "deepfilternet2_arch"} <= set(rows)
    assert "pretrained  48 kHz" in rows["default"] and "Hendrik Schroeter" in rows["default"]  # a public DeepFilterNet or a fine-tune
    assert "preset      48 kHz  2.31 M  MIT" in rows["deepfilternet2_arch"]
    assert main(["info", "--list"]) == 0 and capsys.readouterr().out == listing
    assert main(["info", str(REPO / "configs" / "mal_dynamic.yaml")]) == 0
    out = capsys.readouterr().out
    assert "variant mal-dynamic" in out and "L_mal (model as loss, bottleneck), weight 1" in out and "L_df" in out


def test_quality_gate_keeps_the_clean_utterances_that_reach_the_threshold(toy_data, tmp_path, capsys):
    """data.quality: DNSMOS SIG rates the training and validation speech once (cached), the rest is left out."""
    cache = tmp_path / "scores.sqlite"
    gate = ["data.quality.metric=dnsmos-sig", f"data.quality.cache={cache}", "data.train_size=8", "data.val_size=4",
            "data.segment_seconds=0.5", "--max-epochs", "0"]
    assert main(["train", *train_args(toy_data, tmp_path / "all"), *gate, "data.quality.threshold=0"]) == 0
    everything = json.loads((tmp_path / "all" / "quality.json").read_text())
    scores = everything["scores"]
    assert everything["metric"] == "dnsmos-sig" and cache.is_file() and len(scores) >= 12
    assert all(1.0 <= v <= 5.0 for v in scores.values()) and len(set(scores.values())) > 1
    threshold = float(np.median(list(scores.values())))
    started = time.perf_counter()
    assert main(["train", *train_args(toy_data, tmp_path / "gated"), *gate, f"data.quality.threshold={threshold}"]) == 0
    assert time.perf_counter() - started < 20  # the scores come from the cache
    out = capsys.readouterr().out
    gated = json.loads((tmp_path / "gated" / "quality.json").read_text())
    assert gated["scores"] == scores  # the same files rated the same
    row = gated["sources"]["speech"]
    kept = sum(r["kept"] for r in row.values())
    assert kept == sum(v >= threshold for v in scores.values()) and 0 < kept < len(scores)
    assert all(r["kept_hours"] < r["hours"] or r["kept"] == r["utterances"] for r in row.values())
    assert f"quality gate: dnsmos-sig >= {threshold:g}" in out and "  speech: train " in out
    # the datasets hold exactly the survivors
    from mal.training.config import load_config
    from mal.training.datamodule import EnhancementData

    cfg = load_config(None, [f"output_dir={tmp_path / 'py'}", f"data.root={toy_data}", "data.speech_dirs=[speech]",
                             "data.noise_dirs=[noise]", "data.quality.metric=x", f"data.quality.threshold={threshold}"])
    data = EnhancementData(cfg, quality_scorer=lambda files: {p: scores[p.relative_to(toy_data).as_posix()] for p in files})
    data.setup()
    used = {p.relative_to(toy_data).as_posix() for p in data.train_set.speech_files + data.val_set.speech_files}
    assert used == {name for name, v in scores.items() if v >= threshold}
    # a threshold nothing reaches, and a metric that is not one, fail before work, naming the key
    assert main(["train", *train_args(toy_data, tmp_path / "none"), *gate, "data.quality.threshold=9"]) == 2
    assert main(["train", *train_args(toy_data, tmp_path / "bad"), *gate[1:], "data.quality.metric=pesq",
                 "data.quality.threshold=3"]) == 2
    err = capsys.readouterr().err
    assert "data.quality.threshold: 9.0 leaves no train or val utterance" in err
    assert "data.quality.metric: 'pesq' is not a non-intrusive metric" in err
