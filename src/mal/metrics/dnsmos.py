"""DNSMOS P.835 (SIG/BAK/OVRL) and P.808 through the ``speechmos`` package.

``speechmos`` bundles Microsoft's ONNX models (DNS Challenge). Input is resampled to 16 kHz
and peak-normalised to -10 dBFS first, as the paper does for SIGMOS, so a system's output
level does not move its score.
"""

from __future__ import annotations

import numpy as np

from mal.audio import peak_normalize, resample

DNSMOS_RATE = 16000
PEAK_DBFS = -10.0
DNSMOS_METRICS = ("DNSMOS-SIG", "DNSMOS-BAK", "DNSMOS-OVRL", "DNSMOS-P808")


def dnsmos_unavailable() -> str | None:
    """Why DNSMOS cannot run here, or None when it can."""
    try:
        import speechmos.dnsmos  # noqa: F401
    except Exception as err:  # ImportError, or a missing librosa/onnxruntime underneath
        return f"speechmos not importable ({type(err).__name__}: {err}); pip install speechmos librosa onnxruntime"
    return None


def dnsmos(samples: np.ndarray, sample_rate: int) -> dict[str, float]:
    """DNSMOS scores of one mono signal (any rate; resampled to 16 kHz)."""
    from speechmos import dnsmos as _dnsmos

    x = peak_normalize(resample(np.asarray(samples, dtype=np.float32), sample_rate, DNSMOS_RATE), PEAK_DBFS)
    scores = _dnsmos.run(np.clip(x, -1.0, 1.0), DNSMOS_RATE)
    return {
        "DNSMOS-SIG": float(scores["sig_mos"]),
        "DNSMOS-BAK": float(scores["bak_mos"]),
        "DNSMOS-OVRL": float(scores["ovrl_mos"]),
        "DNSMOS-P808": float(scores["p808_mos"]),
    }
