"""How exactly mal reproduces DeepFilterNet3: `mal enhance --model deepfilternet3` vs its C runtime.

On every VoiceBank-DEMAND noisy test file in ``../shared/data/vbd-test`` (16 kHz in and out:
16 -> 48 -> 16 kHz, the runtime's 30 ms delay removed), the SNR of mal's output against the
runtime's output, per file; plus mal's offline PyTorch output against the runtime at 48 kHz.

    python benchmarks/dfn_equality.py [--data ../shared/data] [--output benchmarks/results_dfn_equality.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mal.inference import enhance_files, load_model
from mal.evaluation.peers import DeepFilterNet3

REPO = Path(__file__).resolve().parents[1]


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((x - ref) ** 2), 1e-30)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results_dfn_equality.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    noisy = Path(args.data) / "vbd-test" / "noisy"
    model, runtime = load_model("deepfilternet3"), DeepFilterNet3()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        enhance_files(model, [noisy], tmp)
        for path in sorted(noisy.glob("*.wav")):
            x, rate = sf.read(path, dtype="float32")
            ours, _ = sf.read(Path(tmp) / path.name, dtype="float32")
            rows.append({"file": path.name, "snr_db_16k": snr_db(runtime.enhance(x, rate), ours)})
    snrs = np.array([r["snr_db_16k"] for r in rows])
    result = {"command": "python benchmarks/dfn_equality.py", "files": len(rows), "min_db": float(snrs.min()),
              "median_db": float(np.median(snrs)), "max_db": float(snrs.max()), "rows": rows}
    out = Path(args.output)
    tmp_out = out.with_name(f".{out.name}.part")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, out)
    print(f"{len(rows)} files: SNR of mal vs the C runtime min {snrs.min():.1f} dB, median {np.median(snrs):.1f} dB, max {snrs.max():.1f} dB")


if __name__ == "__main__":
    main()
