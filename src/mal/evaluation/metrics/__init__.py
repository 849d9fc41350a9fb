"""Speech-quality metrics: intrusive, non-intrusive, a parallel cached runner, statistics.

Metrics are computed in groups (one group = one computation); ``GROUPS`` maps each group to
the column names it produces, ``METRIC_INFO`` gives each column its label and direction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    """How a metric column is shown and compared."""

    label: str
    higher_is_better: bool
    unit: str = ""


GROUPS: dict[str, tuple[str, ...]] = {
    "pesq": ("WB-PESQ",),
    "stoi": ("STOI",),
    "estoi": ("ESTOI",),
    "sisdr": ("SI-SDR",),
    "lsd": ("LSD",),
    "mcd": ("MCD",),
    "composite": ("CSIG", "CBAK", "COVL"),
    "dnsmos": ("DNSMOS-SIG", "DNSMOS-BAK", "DNSMOS-OVRL", "DNSMOS-P808"),
    "nisqa": ("NISQA-MOS", "NISQA-NOI", "NISQA-DIS", "NISQA-COL", "NISQA-LOUD"),
    "distillmos": ("DistillMOS",),
}
INTRUSIVE_GROUPS = ("pesq", "stoi", "estoi", "sisdr", "lsd", "mcd", "composite")
NON_INTRUSIVE_GROUPS = ("dnsmos", "nisqa", "distillmos")
DEFAULT_GROUPS = INTRUSIVE_GROUPS + NON_INTRUSIVE_GROUPS

METRIC_INFO: dict[str, MetricInfo] = {
    "WB-PESQ": MetricInfo("WB-PESQ (MOS-LQO)", True),
    "STOI": MetricInfo("STOI", True),
    "ESTOI": MetricInfo("ESTOI", True),
    "SI-SDR": MetricInfo("SI-SDR", True, "dB"),
    "LSD": MetricInfo("LSD", False),
    "MCD": MetricInfo("MCD", False, "dB"),
    "CSIG": MetricInfo("CSIG", True),
    "CBAK": MetricInfo("CBAK", True),
    "COVL": MetricInfo("COVL", True),
    "DNSMOS-SIG": MetricInfo("DNSMOS P.835 SIG", True),
    "DNSMOS-BAK": MetricInfo("DNSMOS P.835 BAK", True),
    "DNSMOS-OVRL": MetricInfo("DNSMOS P.835 OVRL", True),
    "DNSMOS-P808": MetricInfo("DNSMOS P.808", True),
    "NISQA-MOS": MetricInfo("NISQA overall", True),
    "NISQA-NOI": MetricInfo("NISQA noisiness", True),
    "NISQA-DIS": MetricInfo("NISQA discontinuity", True),
    "NISQA-COL": MetricInfo("NISQA coloration", True),
    "NISQA-LOUD": MetricInfo("NISQA loudness", True),
    "DistillMOS": MetricInfo("DistillMOS", True),
    "HNR": MetricInfo("HNR (voiced frames)", True, "dB"),
}


def parse_groups(text: str | None) -> tuple[str, ...]:
    """Groups from a comma list (``pesq,stoi,nisqa``); ``all``/None gives every group."""
    if not text or text.strip() == "all":
        return DEFAULT_GROUPS
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise ValueError(f"unknown metric group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    return names


def metric_columns(groups: tuple[str, ...]) -> list[str]:
    """Column names produced by ``groups``, in table order."""
    return [m for g in groups for m in GROUPS[g]]
