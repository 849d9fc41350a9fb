"""Print the README's benchmark tables (markdown) from ``benchmarks/results.json``.

    python benchmarks/readme_tables.py [results.json]

``make bench`` writes the JSON; this only formats it, so every figure in the README's
"Benchmarks" section can be traced to one run. Not run by the tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = {"DeepFilterNet3 (C runtime)": "DeepFilterNet3, C runtime", "deepfilternet3 (mal)": "DeepFilterNet3 in mal",
         "deepfilternet_16k": "mal deepfilternet_16k", "deepfilternet2_arch": "mal deepfilternet2_arch"}
ORDER = ["DeepFilterNet3 (C runtime)", "deepfilternet3 (mal)", "deepfilternet_16k", "deepfilternet2_arch"]
MODES = ["streaming", "streaming ONNX", "offline PyTorch", "streaming PyTorch"]  # row order per system


def speed_table(speed: dict) -> list[str]:
    rows = {(r["system"], r["mode"], r["threads"]): r for r in speed["rtf"]}
    lines = ["| system | mode | RTF, 1 thread | x DFN3 | frame median / p99, 1 thread | RTF, 2 threads | = offline |",
             "|---|---|---|---|---|---|---|"]
    for system in ORDER:
        for mode in MODES:
            one, two = rows.get((system, mode, 1)), rows.get((system, mode, 2))
            if one is None:
                continue
            frame = f"{one['frame_ms_median']:.2f} / {one['frame_ms_p99']:.2f} ms" if "frame_ms_median" in one else "-"
            snr = f"{one['snr_vs_offline_db']:.0f} dB" if one.get("snr_vs_offline_db") is not None else ""
            two_rtf = f"{two['rtf']:.3f}" if two else ""
            if system.endswith("(C runtime)") and two:
                two_rtf += " (single-threaded)"
            lines.append(f"| {NAMES[system]} | {mode} | {one['rtf']:.3f} | {one.get('ratio_to_dfn3', 1.0):.2f} | {frame} "
                         f"| {two_rtf} | {snr} |")
    return lines


def turns_line(speed: dict) -> str:
    turns = speed["stream_interleaved"]
    (c_name, c), (m_name, m) = list(turns.items())[:2]
    return (f"C runtime median {c['frame_ms_median']:.2f} ms, p99 {c['frame_ms_p99']:.2f} ms; mal "
            f"{m['frame_ms_median']:.2f} ms ({m['median_ratio']:.2f}x), p99 {m['frame_ms_p99']:.2f} ms "
            f"({m['p99_ratio']:.2f}x), {m['hops']} hops each")


def files_table(speed: dict) -> list[str]:
    rows = [r for r in speed["rtf"] if r["mode"].startswith("files")]
    lines = ["| system | how | RTF | x C runtime | files/s | x mal 1 thread |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r["system"].endswith("(C runtime)"):
            lines.append(f"| DeepFilterNet3, C runtime | `DeepFilterNet3().enhance` per file | {r['rtf']:.3f} | 1.00 "
                         f"| {r['files_per_s']:.2f} | |")
            continue
        how = f"`--threads {r['threads']}" + (f" --jobs {r['jobs']}`" if r["jobs"] > 1 else "`")
        lines.append(f"| mal | {how} | {r['rtf']:.3f} | {r['ratio_to_dfn3']:.2f} | {r['files_per_s']:.2f} "
                     f"| {r['throughput_vs_1_thread']:.2f} |")
    return lines


def training_table(training: dict) -> list[str]:
    one, two = training["threads"]["1"], training["threads"]["2"]
    lines = ["| loss | 1 thread (s) | x baseline | 2 threads (s) | x baseline |", "|---|---|---|---|---|"]
    for name, seconds in one["step_seconds"].items():
        lines.append(f"| {name} | {seconds:.3f} | {one['ratio_to_baseline'][name]:.2f} | {two['step_seconds'][name]:.3f} "
                     f"| {two['ratio_to_baseline'][name]:.2f} |")
    return lines


def evaluate_table(evaluate: dict) -> list[str]:
    lines = ["| code | jobs | files/s | x first row | max relative score difference | passes (s) |", "|---|---|---|---|---|---|"]
    for r in evaluate["results"]:
        worst = max(r["max_rel_diff_vs_first"].values()) if r["max_rel_diff_vs_first"] else 0.0
        passes = ", ".join(f"{w:.1f}" for w in r.get("wall_s_passes", [r["wall_s"]]))
        lines.append(f"| {r['code']} | {r['jobs']} | {r['files_per_s']:.3f} | {r['speedup_vs_first']:.2f} | {worst:.1e} | {passes} |")
    return lines


def profile_lines(profile: dict) -> list[str]:
    turns = profile["taking_turns"]
    lines = [f"- {name}: median {r['frame_ms_median']:.3f} ms, p99 {r['frame_ms_p99']:.3f} ms" for name, r in turns.items()]
    floor = profile["gemv_floor"]
    lines.append(f"- GRU weights: {profile['gru_parameters'] / profile['parameters']:.0%} of {profile['parameters'] / 1e6:.2f} M "
                 f"parameters, {floor['megabytes']} MB; numpy reading them once ({floor['matrices']} matrix-vector products, "
                 f"one thread): {floor['ms_median']:.3f} ms ({floor['gb_per_s']:.1f} GB/s)")
    return lines


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.json"
    results = json.loads(path.read_text())
    speed = results["speed"]
    print(f"make bench on {results['date']}, commit {results['commit']}, {speed['machine']['cpu']}, "
          f"load at start {results['load_average_start']}\n")
    print("\n".join(speed_table(speed)), end="\n\n")
    print("Taking turns: " + turns_line(speed), end="\n\n")
    print("\n".join(files_table(speed)), end="\n\n")
    memory = speed["memory_one_hour"]
    print(f"Memory: {memory['hours']:g} h, peak {memory['peak_mb']:.0f} MB ({memory['before_enhance_mb']:.0f} MB before "
          f"enhancing; {memory['seconds']:.0f} s)\n")
    if "profile_stream" in results:
        print("\n".join(profile_lines(results["profile_stream"])), end="\n\n")
    if "profile_evaluate" in results:
        profile = results["profile_evaluate"]
        print("mal evaluate --jobs 2, per worker:", json.dumps(profile["two_workers"]))
        print("alone, one process: DNSMOS", json.dumps(profile["dnsmos"]), "; the others", json.dumps(profile["other"]))
        print("DNSMOS sessions:", json.dumps(profile["sessions"]), end="\n\n")
    print("\n".join(training_table(results["training"])), end="\n\n")
    print("\n".join(evaluate_table(results["evaluate"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
