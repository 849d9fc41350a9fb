"""Summary statistics and paired significance tests, all from scipy.

- ``summarize``: mean, sample std, and the 95 % Student-t confidence interval of the mean.
- ``paired_test``: Wilcoxon signed-rank test on per-file differences (two-sided), plus a
  paired bootstrap 95 % CI of the mean difference (BCa, 2000 resamples, fixed seed).
- ``adjust_pvalues``: Benjamini-Hochberg false-discovery-rate control across comparisons.
"""

from __future__ import annotations

import math

import numpy as np

from mal.evaluation.metrics import GROUPS

CLEAN_ROW = "Clean"  # the clean references' own row in mal compare's tables (non-intrusive metrics only)
SIGNIFICANCE_METHOD = "Wilcoxon signed-rank (two-sided, paired by file), Benjamini-Hochberg adjusted"
CI_METHOD = "95% Student-t interval of the mean"


def summarize(values: list[float] | np.ndarray) -> dict[str, float | int | list[float]]:
    """``{"mean", "std", "ci95": [lo, hi], "n"}`` over the finite values."""
    from scipy import stats  # start-up: scipy.stats loads only when statistics are computed

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci95": [math.nan, math.nan], "n": 0}
    mean = float(np.mean(x))
    std = float(np.std(x, ddof=1)) if n > 1 else 0.0
    if n > 1 and std > 0:
        lo, hi = stats.t.interval(0.95, n - 1, loc=mean, scale=std / math.sqrt(n))
    elif n > 1:
        lo = hi = mean
    else:
        lo = hi = math.nan  # one file: no interval
    return {"mean": mean, "std": std, "ci95": [float(lo), float(hi)], "n": n}


def paired_test(system: np.ndarray, reference: np.ndarray, seed: int = 0) -> dict[str, float | int]:
    """Wilcoxon p-value and bootstrap CI of mean(system - reference) over finite pairs."""
    from scipy import stats  # start-up: scipy.stats loads only when statistics are computed

    a = np.asarray(system, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    n = int(diff.size)
    result: dict[str, float | int] = {"n": n, "mean_diff": float(np.mean(diff)) if n else math.nan,
                                      "p": math.nan, "diff_ci95_lo": math.nan, "diff_ci95_hi": math.nan}
    if n < 2 or not np.any(diff != 0):
        if n >= 1 and not np.any(diff != 0):
            result["p"] = 1.0
        return result
    result["p"] = float(stats.wilcoxon(diff, alternative="two-sided").pvalue)
    boot = stats.bootstrap((diff,), np.mean, n_resamples=2000, confidence_level=0.95,
                           method="BCa" if n >= 10 else "percentile", random_state=np.random.default_rng(seed))
    result["diff_ci95_lo"], result["diff_ci95_hi"] = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    return result


def adjust_pvalues(pvalues: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (NaN entries stay NaN)."""
    from scipy import stats  # start-up: scipy.stats loads only when statistics are computed

    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = stats.false_discovery_control(p[finite], method="bh")
    return [float(v) for v in out]


def build_summary(rows: list[dict], columns: list[str], systems: list[str], skipped: dict[str, str],
                  errors: list[str], warnings: list[str], level_align: str, clean_row: str | None = None) -> dict:
    """summary.json content: per system and metric mean, std, 95 % CI, n; notes on skips.

    ``clean_row``: the name of the clean references' rows (see ``score_systems``), when
    ``rows`` has some: an entry after Noisy (else first), named by ``clean_reference``.
    """
    out: dict = {"ci_method": CI_METHOD, "level_align": level_align, "systems": {},
                 "skipped_metrics": {f"{g} ({', '.join(GROUPS[g])})": reason for g, reason in skipped.items()},
                 "bad_files": errors, "warnings": warnings}
    if clean_row and any(r["system"] == clean_row for r in rows):
        out["clean_reference"] = clean_row
        systems = insert_after_noisy(list(systems), clean_row)
    for system in systems:
        mine = [r for r in rows if r["system"] == system]
        levels = [r["level_db"] for r in mine if math.isfinite(r.get("level_db", math.nan))]
        entry: dict = {"n_files": len(mine), "metrics": {c: summarize([r.get(c, math.nan) for r in mine]) for c in columns}}
        if levels:
            entry["median_level_db"] = float(np.median(levels))
            if abs(entry["median_level_db"]) > 3.0:
                entry["note"] = (f"speech level differs from the clean reference by {entry['median_level_db']:+.1f} dB "
                                 "(level-normalised output?): CBAK and MCD depend on level, see --level-align ls")
        out["systems"][system] = entry
    return out


def with_clean_row(systems: list[str], summary: dict) -> list[str]:
    """``systems`` in table order: with the summary's clean reference row, if any, after Noisy (else first)."""
    clean = summary.get("clean_reference")
    if not clean or clean not in summary.get("systems", {}) or clean in systems:
        return list(systems)
    return insert_after_noisy(list(systems), clean)


def insert_after_noisy(systems: list[str], name: str) -> list[str]:
    """``systems`` with ``name`` after the Noisy row (else first)."""
    at = next((i + 1 for i, s in enumerate(systems) if s.lower() == "noisy"), 0)
    return [*systems[:at], name, *systems[at:]]


def compare_to_reference(rows: list[dict], columns: list[str], systems: list[str], reference: str) -> dict:
    """``{system: {metric: paired_test(...) + p_adj}}`` against ``reference``, paired by file."""
    by_file = {s: {r["file"]: r for r in rows if r["system"] == s} for s in systems}
    ref_rows = by_file[reference]
    results: dict = {}
    for system in systems:
        if system == reference:
            continue
        common = sorted(set(by_file[system]) & set(ref_rows))
        results[system] = {
            c: paired_test(np.array([by_file[system][f].get(c, math.nan) for f in common], dtype=float),
                           np.array([ref_rows[f].get(c, math.nan) for f in common], dtype=float))
            for c in columns
        }
    for c in columns:  # control the false discovery rate across systems, per metric
        names = list(results)
        adjusted = adjust_pvalues([results[s][c]["p"] for s in names])
        for s, p in zip(names, adjusted):
            results[s][c]["p_adj"] = p
    return results
