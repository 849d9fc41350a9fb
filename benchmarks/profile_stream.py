"""Where a hop of mal's DeepFilterNet3 ONNX stream goes, measured by taking parts out.

    python benchmarks/profile_stream.py [--seconds 20]

onnxruntime's own profiler times every node but adds microseconds to each of the ~220 nodes
of 1-10 us, so its shares mislead (on commit 9806612 it reported 2.2 ms of kernel time per
hop for a hop that takes 0.85 ms without it).
This script instead exports the public DeepFilterNet3 (official weights, imported) as mal's
streaming step three times: as shipped, with its five GRU layers replaced by a stand-in of the
same shapes (a scale: no weights), and the GRU layers alone (the same five layers in a row).
The three streams, and DeepFilterNet3's C runtime, take turns on the same audio every 50 hops
(one thread), so the medians compare under the same load. It also times plain matrix-vector
products over the GRU weights (numpy, one thread), the memory-bound floor for reading them.
Writes ``benchmarks/results_profile_stream.json``. Not run by the tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import test_audio, time_interleaved  # noqa: E402  (same audio and turn-taking as make bench)

REPO = Path(__file__).resolve().parents[1]


class _ScaleInsteadOfGRU(torch.nn.Module):
    """Same input/output shapes as the GRU it replaces, no weights: what the rest costs."""

    def forward(self, x, h):
        y = x * 0.5
        return y, h * 0.5 + y[:, -1:].transpose(0, 1)


class _GRUsOnly(torch.nn.Module):
    """The model's GRU layers one after the other on one frame (their weights, their shapes)."""

    def __init__(self, grus):
        super().__init__()
        self.grus = torch.nn.ModuleList(grus)

    def forward(self, x, *states):
        new = []
        for gru, h in zip(self.grus, states):
            x, h = gru(x, h)
            new.append(h)
        return (x, *new)


def gru_only_stream(grus, path: Path):
    """An onnxruntime session over :class:`_GRUsOnly`, driven like a stream (bound buffers)."""
    import onnxruntime as ort

    module = _GRUsOnly(grus).eval()
    states = [torch.zeros(g.num_layers, 1, g.hidden_size) for g in grus]
    x = torch.zeros(1, 1, grus[0].input_size)
    names = [f"h{i}" for i in range(len(grus))]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(module, (x, *states), str(path), dynamo=False, opset_version=17,
                          input_names=["x", *names], output_names=["y", *(f"new_{n}" for n in names)])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {"x": x.numpy(), **{n: s.numpy() for n, s in zip(names, states)}}

    class Stream:
        hop = 480

        def process(self, frame):
            feeds["x"][0, 0, :] = frame[: feeds["x"].shape[-1]]
            outputs = session.run(None, feeds)
            for n, value in zip(names, outputs[1:]):
                feeds[n] = value
            return outputs[0]

    return Stream()


def gemv_floor(grus, repeats: int = 300) -> dict:
    """Median time of numpy matrix-vector products over every GRU weight matrix, once each."""
    mats = [getattr(g, f"{kind}_l{layer}").detach().numpy().copy() for g in grus for layer in range(g.num_layers)
            for kind in ("weight_ih", "weight_hh")]
    vec = np.ones(mats[0].shape[1], np.float32)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for m in mats:
            m @ vec
        times.append(time.perf_counter() - t)
    mb = sum(m.nbytes for m in mats) / 1e6
    median = float(np.median(times))
    return {"matrices": len(mats), "megabytes": round(mb, 2), "ms_median": 1e3 * median, "gb_per_s": mb / 1e3 / median}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results_profile_stream.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    from mal.inference.export import export_onnx, open_stream
    from mal.models.deepfilternet import SqueezedGRU
    from mal.evaluation.peers import DeepFilterNet3
    from mal.models.public import load_public

    x, source = test_audio(args.seconds, 48000)
    model = load_public("deepfilternet3")
    grus = [m.gru for m in model.modules() if isinstance(m, SqueezedGRU)]
    weights = sum(p.numel() for p in model.parameters())
    gru_weights = sum(p.numel() for g in grus for p in g.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        shipped = open_stream(export_onnx(model, Path(tmp) / "dfn3.onnx"), 1)
        ablated = load_public("deepfilternet3")
        for m in ablated.modules():
            if isinstance(m, SqueezedGRU):
                m.gru = _ScaleInsteadOfGRU()
        without = open_stream(export_onnx(ablated, Path(tmp) / "dfn3-no-gru.onnx"), 1)
        only = gru_only_stream(grus, Path(tmp) / "grus.onnx")
        streams = {"DeepFilterNet3 (C runtime)": DeepFilterNet3(), "mal stream": shipped,
                   "mal stream, GRUs replaced by a scale": without, "the 5 GRU layers alone": only}
        turns = time_interleaved(streams, x)
    floor = gemv_floor(grus)
    results = {
        "date": datetime.date.today().isoformat(), "command": "python benchmarks/profile_stream.py",
        "audio": f"{args.seconds:g} s of {source}, 48 kHz", "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "parameters": weights, "gru_parameters": gru_weights, "taking_turns": turns, "gemv_floor": floor,
    }
    out = Path(args.output)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{results['audio']}; one thread; streams taking turns every 50 hops")
    for name, r in turns.items():
        print(f"  {name:<40} median {r['frame_ms_median']:.3f} ms  p99 {r['frame_ms_p99']:.3f} ms")
    print(f"GRU weights {gru_weights / weights:.0%} of {weights / 1e6:.2f} M parameters ({floor['megabytes']} MB); "
          f"numpy reading them once (10 matrix-vector products): {floor['ms_median']:.3f} ms ({floor['gb_per_s']:.1f} GB/s)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
