"""The ``make demo`` run: train a small model briefly, enhance example audio, say where it is.

With real data (``--data DIR`` or ``../shared/data``) it mixes LibriSpeech speech with real
noise and enhances a few DNS / VoiceBank-DEMAND test files. Without any data it synthesises
English speech with eSpeak NG (see :mod:`mal.demo_audio`) and synthetic noises, so it runs
on a fresh machine with no download.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mal.audio import list_audio, read_audio, write_audio

SMALL_MODEL = {"preset": "deepfilternet_16k"}


def _synthetic_data(folder: Path, rate: int) -> tuple[Path, Path, list[tuple[str, np.ndarray, np.ndarray]]]:
    """Write synthesised speech and noise files; return their folders and 3 test mixtures."""
    from mal.demo_audio import demo_noises, demo_speech

    speech, noises = demo_speech(24, sample_rate=rate, seed=0), demo_noises(rate, seconds=20.0, seed=0)
    speech_dir, noise_dir = folder / "speech", folder / "noise"
    for i, s in enumerate(speech[:-3]):
        write_audio(speech_dir / f"demo-{i % 6}_{i:03d}.wav", s, rate)  # 6 pseudo-speakers
    for i, n in enumerate(noises):
        write_audio(noise_dir / f"noise_{i:02d}.wav", n, rate)
    rng = np.random.default_rng(1)
    examples = []
    for i, clean in enumerate(speech[-3:]):
        noise = noises[i % len(noises)]
        start = rng.integers(0, max(1, len(noise) - len(clean)))
        seg = np.resize(noise[start:], len(clean))
        gain = np.sqrt(np.mean(clean**2) / (np.mean(seg**2) + 1e-12) / 10 ** (5.0 / 10))  # 5 dB SNR
        examples.append((f"example_{i}", (clean + gain * seg).astype(np.float32), clean))
    return speech_dir, noise_dir, examples


def run_demo(out_dir: str | Path = "demo_output", data_dir: str | Path | None = None, train_seconds: int = 100) -> dict:
    """Train for about ``train_seconds``, enhance examples; returns paths and scores."""
    from mal.config import load_config
    from mal.enhance import enhance_array, load_model
    from mal.losses import si_sdr
    from mal.training import train

    import torch

    out = Path(out_dir)
    rate = 16000
    real = Path(data_dir) if data_dir else Path("../shared/data")
    use_real = (real / "librispeech-train-clean-100-subset" / "clean").is_dir() and (real / "noise-real" / "noise").is_dir()
    examples: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    if use_real:
        data = {"root": str(real.resolve()), "speech_dirs": ["librispeech-train-clean-100-subset/clean"], "noise_dirs": ["noise-real/noise"]}
        test = real / "dns-test-noreverb"
        for noisy in list_audio(test / "noisy")[:2] if (test / "noisy").is_dir() else []:
            clean = test / "clean" / noisy.name
            examples.append((noisy.stem, read_audio(noisy, rate)[0], read_audio(clean, rate)[0] if clean.exists() else None))
        source = f"real speech and noise from {real}"
    else:
        speech_dir, noise_dir, examples = _synthetic_data(out / "data", rate)
        data = {"root": str(out.resolve() / "data"), "speech_dirs": [speech_dir.name], "noise_dirs": [noise_dir.name]}
        source = "speech synthesised with eSpeak NG and synthetic noise (no data found)"
    print(f"demo: training a small model for ~{train_seconds} s on {source}")
    cfg = load_config(None, [
        f"output_dir={out / 'run'}", f"model={SMALL_MODEL}", f"data.root={data['root']}",
        f"data.speech_dirs={data['speech_dirs']}", f"data.noise_dirs={data['noise_dirs']}",
        "data.segment_seconds=1.5", "data.batch_size=8", "data.train_size=400", "data.val_size=24",
        "data.num_workers=1", "data.snr_range_db=[0, 15]", "optim.lr=0.003", "optim.warmup_steps=20",
        "trainer.max_epochs=50", f"trainer.max_time=00:00:{train_seconds // 60:02d}:{train_seconds % 60:02d}",
        "trainer.log_every_n_steps=5",
    ])
    started = time.time()
    ckpt_dir = train(cfg)
    model = load_model(ckpt_dir / "last.ckpt")
    results = {"checkpoint": str(ckpt_dir / "last.ckpt"), "train_seconds": time.time() - started, "files": []}
    for name, noisy, clean in examples:
        enhanced = enhance_array(model, noisy, rate)
        write_audio(out / "enhanced" / f"{name}.wav", enhanced, rate)
        write_audio(out / "noisy" / f"{name}.wav", noisy, rate)
        entry = {"name": name, "enhanced": str(out / "enhanced" / f"{name}.wav")}
        if clean is not None:
            ref = torch.from_numpy(clean[None])
            entry["si_sdr_noisy"] = float(si_sdr(torch.from_numpy(noisy[None]), ref))
            entry["si_sdr_enhanced"] = float(si_sdr(torch.from_numpy(enhanced[None]), ref))
        results["files"].append(entry)
    return results
