"""``mal demo`` (what ``make demo`` runs): the Model-as-Loss paradigm in about two minutes.

1. stage 1: the small 16 kHz DeepFilterNet (preset ``deepfilternet_16k``) trained briefly
   with L_df on real speech mixed with real noise (``../shared/data``), or, with no data,
   on speech synthesised with eSpeak NG and synthetic noise;
2. stage 2: Model-as-Loss (mal-dynamic: L_df + L_mal, the MAL-encoder refreshed every epoch)
   from the stage-1 weights;
3. the example files enhanced by both and by the default public model (DeepFilterNet3),
   scored (SI-SDR, and WB-PESQ where clean references exist) and put on a listening page.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

MODEL = "{preset: deepfilternet_16k}"
RATE = 16000


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train a small model (stage 1 + Model-as-Loss), compare it with DeepFilterNet3")
    p.add_argument("-o", "--output-dir", default="demo_output", help="where everything is written")
    p.add_argument("--data", help="data folder with the layout of ../shared/data (default: ../shared/data when present)")
    p.add_argument("--train-seconds", type=int, default=100, help="training time budget, both stages together")
    p.set_defaults(run=run)


def _synthetic_data(folder: Path, rate: int):
    """Synthesised speech and noise files; their folders and 3 test mixtures (name, noisy, clean)."""
    import numpy as np

    from mal.audio import write_audio
    from mal.data.synthetic import demo_noises, demo_speech

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


def _examples(real: Path, out: Path):
    """(data overrides, examples, where the data came from): real data when present, else synthetic."""
    from mal.audio import list_audio, read_audio

    if (real / "librispeech-train-clean-100-subset" / "clean").is_dir() and (real / "noise-real" / "noise").is_dir():
        test = real / "dns-test-noreverb"  # test pairs: enhanced and scored, never trained on
        examples = [(noisy.stem, read_audio(noisy, RATE)[0], read_audio(test / "clean" / noisy.name, RATE)[0])
                    for noisy in list_audio(test / "noisy")[:3]] if (test / "noisy").is_dir() else []
        data = [f"data.root={real.resolve()}", "data.speech_dirs=[librispeech-train-clean-100-subset/clean]",
                "data.noise_dirs=[noise-real/noise]"]
        return data, examples, f"real speech and noise from {real}"
    speech_dir, noise_dir, examples = _synthetic_data(out / "data", RATE)
    data = [f"data.root={(out / 'data').resolve()}", f"data.speech_dirs=[{speech_dir.name}]", f"data.noise_dirs=[{noise_dir.name}]"]
    return data, examples, "speech synthesised with eSpeak NG and synthetic noise (no data found)"


def _overrides(seconds: int, run_dir: Path) -> list[str]:
    return [f"output_dir={run_dir}", f"model={MODEL}", "data.segment_seconds=1.5", "data.batch_size=8",
            "data.train_size=320", "data.val_size=16", "data.num_workers=1", "data.snr_range_db=[0, 15]",
            "trainer.max_epochs=50", f"trainer.max_time=00:00:{seconds // 60:02d}:{seconds % 60:02d}",
            "trainer.log_every_n_steps=5"]


def run(args) -> int:
    from mal.audio import write_audio
    from mal.cli import main as mal_main
    from mal.inference import enhance_array, load_model
    from mal.models.store import default_public_name
    from mal.training import finetune, train
    from mal.training.config import load_config

    out = Path(args.output_dir)
    data, examples, source = _examples(Path(args.data) if args.data else Path("../shared/data"), out)
    stage1_seconds = round(args.train_seconds * 0.6)
    stage2_seconds = args.train_seconds - stage1_seconds
    started = time.time()
    print(f"demo: stage 1, L_df, ~{stage1_seconds} s on {source}")
    stage1 = train(load_config(None, [*_overrides(stage1_seconds, out / "stage1"), *data, "optim.lr=0.003", "optim.warmup_steps=20"]))
    print(f"demo: stage 2, Model-as-Loss (mal-dynamic), ~{stage2_seconds} s from {stage1 / 'last.ckpt'}")
    stage2 = finetune(load_config(None, [
        *_overrides(stage2_seconds, out / "mal-dynamic"), *data, "finetune.variant=mal-dynamic", "optim.lr=0.001",
        f"data.split_file={out / 'stage1' / 'split.json'}"]), stage1 / "last.ckpt")
    trained = time.time() - started
    public = default_public_name()
    systems = {"Noisy": None, "stage 1 (L_df)": stage1 / "last.ckpt", "mal-dynamic": stage2 / "last.ckpt", public: public}
    for name, noisy, clean in examples:
        write_audio(out / "noisy" / f"{name}.wav", noisy, RATE)
        write_audio(out / "clean" / f"{name}.wav", clean, RATE)
    folders = {"Noisy": out / "noisy"}
    for system, source_model in systems.items():
        if source_model is None:
            continue
        model = load_model(source_model)
        folders[system] = out / "enhanced" / system.split(" ")[0]
        for name, noisy, _ in examples:
            write_audio(folders[system] / f"{name}.wav", enhance_array(model, noisy, RATE), RATE)
    print(f"\ndemo: trained for {trained:.0f} s; scores of the {len(examples)} examples (listening page below):")
    code = mal_main(["compare", "--clean", str(out / "clean"), "--systems", *[f"{s}={f}" for s, f in folders.items()],
                     "--metrics", "sisdr,pesq", "--reference", "stage 1 (L_df)", "--title", "mal demo",
                     "--quiet", "--no-cache", "-o", str(out / "compare")])
    print(f"checkpoints: {stage1 / 'last.ckpt'} (stage 1), {stage2 / 'last.ckpt'} (mal-dynamic)")
    print(f"try: mal enhance YOUR.wav -o enhanced/ --model {stage2 / 'last.ckpt'}")
    print(f"demo: {time.time() - started:.0f} s in all", file=sys.stderr)
    return code
