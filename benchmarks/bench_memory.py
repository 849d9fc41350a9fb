"""Peak memory of `mal enhance` with DeepFilterNet3 on one long 48 kHz file (default 1 hour).

    python benchmarks/bench_memory.py [--minutes 60] [--threads 1]

Writes a noisy 48 kHz file of that length to a temporary folder (the 48 kHz VCTK speech of
../shared/data/speech-48k repeated, mixed with its real noise at 5 dB SNR, written block by
block), runs ``mal enhance FILE -o OUT --model deepfilternet3`` in a child process and records
the child's peak resident memory (``getrusage``), its wall time and the output's length. The
target (issue 14): under 1 GB. Writes benchmarks/results_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
RATE = 48000


def write_long_file(path: Path, data: Path, minutes: float, seed: int = 0) -> float:
    """A noisy 48 kHz file of ``minutes``, written in blocks; returns its length in seconds."""
    from mal.audio import list_audio, read_audio, resample

    speech = [read_audio(p)[0] for p in list_audio(data / "speech-48k" / "clean")]
    speech = [s for s in speech if len(s)]
    noise = np.concatenate([resample(read_audio(p)[0], 16000, RATE) for p in list_audio(data / "noise-real" / "noise")[:8]])
    rng = np.random.default_rng(seed)
    total, written, k = int(minutes * 60 * RATE), 0, 0
    with sf.SoundFile(str(path), "w", RATE, 1, subtype="PCM_16") as out:
        while written < total:
            clean = speech[k % len(speech)][: total - written]
            start = int(rng.integers(0, max(1, len(noise) - len(clean))))
            n = np.resize(noise[start:], len(clean))
            gain = np.sqrt(np.mean(clean**2) / max(np.mean(n**2), 1e-12) / 10 ** (5 / 10))
            out.write(np.clip(clean + gain * n, -1, 1))
            written += len(clean)
            k += 1
    return total / RATE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results_memory.json"))
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "speech-48k" / "clean").is_dir():
        print(f"benchmark data not found at {data}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mal-bench-memory-") as tmp:
        noisy, out_dir = Path(tmp) / "long_48k.wav", Path(tmp) / "enhanced"
        seconds = write_long_file(noisy, data, args.minutes)
        cmd = [sys.executable, "-m", "mal", "enhance", str(noisy), "-o", str(out_dir), "--model", "deepfilternet3",
               "--threads", str(args.threads)]
        start = time.perf_counter()
        code = subprocess.call(cmd, cwd=REPO)
        wall = time.perf_counter() - start
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        if code != 0:
            print(f"mal enhance failed (exit {code})", file=sys.stderr)
            return 1
        info = sf.info(str(out_dir / noisy.name))
    result = {"benchmark": "peak memory of mal enhance, DeepFilterNet3, one long 48 kHz file",
              "command": "python benchmarks/bench_memory.py " + " ".join(sys.argv[1:]), "audio_seconds": seconds,
              "threads": args.threads, "peak_rss_mb": round(peak_kib / 1024, 1), "target_mb": 1024,
              "wall_s": round(wall, 1), "rtf": round(wall / seconds, 4), "output_seconds": info.frames / info.samplerate,
              "output_rate": info.samplerate, "input_file_mb": round(seconds * RATE * 2 / 2**20, 1),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    out = Path(args.out)
    part = out.with_name(f".{out.name}.part")
    part.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(part, out)
    print(f"{seconds / 60:.0f} min of 48 kHz audio: peak RSS {result['peak_rss_mb']:.0f} MB (target < 1024 MB), "
          f"RTF {result['rtf']:.3f}, output {result['output_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
