"""What 16 kHz training data means for a 48 kHz model: the band above 8 kHz, measured.

Fine-tuning the public (48 kHz) DeepFilterNets on mal's 16 kHz training speech resamples the
mixtures to 48 kHz, so clean targets carry nothing above 8 kHz. On the 48 kHz VCTK speech in
``../shared/data/speech-48k`` this prints, per file and on average, the share of energy above
8 kHz (dB relative to the whole signal) of: the original speech; the same speech through
16 kHz and back (what a fine-tuning target looks like); and the public DeepFilterNet3's output
on the original speech.

    python benchmarks/band_48k.py [--data ../shared/data] [--output benchmarks/results_band_48k.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mal.audio import resample
from mal.audio.dsp import band_energy_db as high_band_db
from mal.models.public import load_public

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results_band_48k.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_public("deepfilternet3")
    rows = []
    for path in sorted(p for p in (Path(args.data) / "speech-48k" / "clean").iterdir() if p.suffix in (".wav", ".flac")):
        x, rate = sf.read(path, dtype="float32")
        if rate != 48000:
            continue
        x = x if x.ndim == 1 else x.mean(axis=1)
        via16 = resample(resample(x, 48000, 16000), 16000, 48000)[: len(x)]
        with torch.no_grad():
            enhanced = model(torch.from_numpy(x)[None])[0].numpy()
        rows.append({"file": path.name, "original_db": high_band_db(x, rate), "via_16k_db": high_band_db(via16, rate),
                     "dfn3_on_original_db": high_band_db(enhanced, rate)})
    keys = ("original_db", "via_16k_db", "dfn3_on_original_db")
    summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    result = {"command": "python benchmarks/band_48k.py", "files": len(rows), "mean": summary, "rows": rows}
    out = Path(args.output)
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"{len(rows)} files; energy above 8 kHz, dB re total: " + ", ".join(f"{k} {v:.1f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
