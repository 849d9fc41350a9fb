"""Files per second of `mal evaluate`'s scoring, per --jobs, against an older revision if asked.

    python benchmarks/bench_evaluate.py [--files N] [--jobs 1,2] [--baseline REV] [--metrics all]
                                        [--repeats 2] [--nisqa-weights PATH] [--out PATH]

Scores the first N (default: all 64) noisy VoiceBank-DEMAND test files of
../shared/data/vbd-test against their clean references, without the cache, per job count,
and writes benchmarks/results_evaluate.json. Every configuration is measured ``--repeats``
times, the configurations taking turns, and its fastest pass is reported (all passes are in
the JSON). Each measurement is a fresh Python
process, so its time includes imports, starting the workers and loading the models, as a
`mal evaluate` run does. With --baseline REV, the same measurements are made with
src/mal of git revision REV (extracted to a temporary folder), in the same run, and the
scores of every file and metric are compared with it (max relative difference per
metric). Not run by the tests.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _where(package: Path) -> str:
    """Which mal was imported, without this machine's absolute paths: repo-relative, or the
    extracted revision's folder under the temporary directory."""
    return str(package.relative_to(REPO)) if package.is_relative_to(REPO) else "<tmp>/" + "/".join(package.parts[-3:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "vbd-test"))
    parser.add_argument("--files", type=int, default=0, help="first N files (default 0: all)")
    parser.add_argument("--metrics", default="all")
    parser.add_argument("--jobs", default="1,2", help="comma list of worker counts")
    parser.add_argument("--baseline", default=None, help="git revision whose src/mal is measured too, for reference")
    parser.add_argument("--repeats", type=int, default=2, help="passes over every configuration, taking turns; the best kept")
    parser.add_argument("--nisqa-weights", default=os.environ.get("MAL_NISQA_WEIGHTS",
                        str(REPO.parent / "shared" / "models" / "nisqa" / "nisqa.tar")))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results_evaluate.json"))
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: one measurement, in a child
    args = parser.parse_args()
    if args.measure:
        return _measure(json.loads(args.measure))

    data = Path(args.data)
    if not (data / "noisy").is_dir():
        print(f"benchmark data not found at {data}", file=sys.stderr)
        return 2
    weights = args.nisqa_weights if Path(args.nisqa_weights).is_file() else None
    job_counts = [int(j) for j in args.jobs.split(",")]
    with tempfile.TemporaryDirectory(prefix="mal-bench-") as tmp:
        codes = {"current": str(REPO / "src")}
        if args.baseline:
            codes = {f"baseline {args.baseline}": _extract(args.baseline, Path(tmp) / "baseline"), **codes}
        # Every configuration measured --repeats times, taking turns (the order reversed on each
        # pass), and its best pass kept: on a shared machine the load drifts between measurements
        # a minute apart (one configuration took 33 s in one pass and 23 s in a run soon after).
        configs = [(code, src, n_jobs) for n_jobs in job_counts for code, src in codes.items()]
        passes: dict[tuple[str, int], list[dict]] = {(code, n_jobs): [] for code, _, n_jobs in configs}
        rows = {}
        for repeat in range(args.repeats):
            for code, src, n_jobs in (configs if repeat % 2 == 0 else configs[::-1]):
                spec = {"data": str(data), "files": args.files, "metrics": args.metrics, "weights": weights,
                        "jobs": n_jobs, "rows": str(Path(tmp) / f"rows-{code}-{n_jobs}-{repeat}.json".replace(" ", "_"))}
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
                subprocess.run([sys.executable, __file__, "--measure", json.dumps(spec)], env=env, check=True)
                measured = json.loads(Path(spec["rows"]).read_text())
                rows[(code, n_jobs)] = measured.pop("rows")
                passes[(code, n_jobs)].append(measured)
                print(f"{code:>20} --jobs {n_jobs}: {measured['files']} files in {measured['wall_s']:.1f} s "
                      f"= {measured['files_per_s']:.2f} files/s (pass {repeat + 1})")
        results = []
        for code, _, n_jobs in configs:
            best = min(passes[(code, n_jobs)], key=lambda m: m["wall_s"])
            results.append({"code": code, "jobs": n_jobs, **best,
                            "wall_s_passes": [m["wall_s"] for m in passes[(code, n_jobs)]]})
    reference = results[0]
    for entry in results:
        entry["speedup_vs_first"] = round(reference["wall_s"] / entry["wall_s"] * entry["files"] / reference["files"], 2)
        entry["max_rel_diff_vs_first"] = _max_rel_diff(rows[(reference["code"], reference["jobs"])],
                                                       rows[(entry["code"], entry["jobs"])])
    from mal.reports.tables import write_json

    first = results[0]
    write_json(args.out, {"benchmark": "mal evaluate scoring throughput", "metric_groups": first["groups"],
                          "skipped": first["skipped"], "audio_seconds": first["audio_seconds"], "results": results,
                          "reference_row": f"{reference['code']} --jobs {reference['jobs']}",
                          "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                      "platform": platform.platform()},
                          "note": "each row is a fresh process: wall time includes imports, worker start-up and "
                                  "model loading; the CPU may be shared"})
    print(f"wrote {args.out}")
    return 0


def _extract(revision: str, folder: Path) -> str:
    """src/mal of ``revision`` under ``folder``; returns the folder to put on PYTHONPATH."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "src/mal"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return str(folder / "src")


def _measure(spec: dict) -> int:
    """One measurement in this (fresh) process: imports, scoring, model loading all timed."""
    start = time.perf_counter()
    import soundfile as sf

    from mal.evaluation.metrics import parse_groups
    from mal.evaluation.metrics.runner import ScoreOptions, check_groups, pair_jobs, run_jobs

    data = Path(spec["data"])
    jobs, _ = pair_jobs("Noisy", data / "noisy", data / "clean")
    jobs = jobs[: spec["files"] or None]
    import inspect

    light = {"light": spec["jobs"] > 1} if "light" in inspect.signature(check_groups).parameters else {}  # as score_systems
    groups, skipped = check_groups(parse_groups(spec["metrics"]), spec["weights"], True, **light)
    result = run_jobs(jobs, ScoreOptions(groups, spec["weights"]), n_jobs=spec["jobs"], cache_path=None, progress=False)
    wall = time.perf_counter() - start
    audio_seconds = sum(sf.info(j.path).duration for j in jobs)
    import mal

    Path(spec["rows"]).write_text(json.dumps({
        "mal": _where(Path(mal.__file__).parent), "files": len(result.rows), "errors": len(result.errors),
        "wall_s": round(wall, 2), "files_per_s": round(len(result.rows) / wall, 3),
        "audio_s_per_s": round(audio_seconds / wall, 2), "groups": list(groups), "skipped": skipped,
        "audio_seconds": round(audio_seconds, 1), "rows": result.rows}))
    return 0


def _max_rel_diff(rows_a: list[dict], rows_b: list[dict]) -> dict[str, float | str] | str:
    """Per metric, the largest |a - b| / |a| over files (0.0: identical; NaN in both counts as equal)."""
    by_file = {r["file"]: r for r in rows_b}
    if sorted(by_file) != sorted(r["file"] for r in rows_a):
        return "different files scored"
    worst: dict[str, float] = {}
    for a in rows_a:
        b = by_file[a["file"]]
        for name, value in a.items():
            if not isinstance(value, float):
                continue
            other = b[name]
            if value == other or (math.isnan(value) and math.isnan(other)):
                diff = 0.0
            elif math.isnan(value) or math.isnan(other):
                diff = math.inf
            else:
                diff = abs(value - other) / max(abs(value), 1e-300)
            worst[name] = max(worst.get(name, 0.0), diff)
    return {name: diff if math.isfinite(diff) else "NaN on one side only" for name, diff in worst.items()}


if __name__ == "__main__":
    sys.exit(main())
