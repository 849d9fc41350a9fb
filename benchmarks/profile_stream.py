"""Where a hop of mal's DeepFilterNet3 ONNX stream goes: onnxruntime's own profiler.

    python benchmarks/profile_stream.py [--hops 600]

Exports the public DeepFilterNet3 (its official weights, imported) as mal's streaming step,
runs ``--hops`` hops of 48 kHz audio through ``DeepFilterNetOnnxStream`` on one thread with
onnxruntime's profiling on, and prints the wall time per hop, the session's run time per hop,
the kernels' time per hop and the ten operator types taking most kernel time. The profiler
slows every hop (about 3x here), so read the shares, not the times. Not run by the tests.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import test_audio  # noqa: E402  (VoiceBank-DEMAND noisy speech, else synthetic)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, default=600)
    args = parser.parse_args()
    import onnxruntime as ort

    from mal.export import export_onnx, open_stream
    from mal.public_models import load_public

    x, source = test_audio(args.hops / 100 + 1, 48000)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(load_public("deepfilternet3"), Path(tmp) / "deepfilternet3.onnx")
        stream = open_stream(path, 1)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as open_session
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort-profile")
        stream.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        stream._bind()
        stream.reset()
        hop, n = stream.hop, args.hops
        start = time.perf_counter()
        for i in range(n):
            stream.process(x[i * hop : (i + 1) * hop])
        wall = (time.perf_counter() - start) / n
        events = json.loads(Path(stream.session.end_profiling()).read_text())
    kernels, run, nodes = collections.Counter(), 0.0, 0
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernels[event["args"]["op_name"]] += event["dur"]
            nodes += 1
        elif event.get("cat") == "Session" and event["name"] == "model_run":
            run += event["dur"]
    total = sum(kernels.values())
    print(f"{n} hops of {source}, one thread, profiler on")
    print(f"wall per hop {1e3 * wall:.3f} ms; session run {run / n / 1e3:.3f} ms ({100 * run / n / 1e6 / wall:.0f}%); "
          f"kernels {total / n / 1e3:.3f} ms ({100 * total / run:.0f}% of the run); {nodes / n:.0f} nodes a hop")
    for op, microseconds in kernels.most_common(10):
        print(f"  {op:<16} {microseconds / n / 1e3:.3f} ms  {100 * microseconds / total:.0f}% of kernel time")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
