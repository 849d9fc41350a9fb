"""DistillMOS (Stahl & Gamper 2025): a compact MOS predictor distilled from an XLS-R quality model.

The ``distillmos`` package (MIT, Microsoft; its weights ``distillmos/weights/distill_mos_v7.pt``
are inside the wheel) needs ``xls-r-sqa`` (MIT) for its transformer and attention-pooling head.
Both are installed without their dependencies (``pip install --no-deps distillmos==0.9.1
xls-r-sqa==0.1.0``): they would bring torchaudio, which does not work with mal's torch build
(and xls-r-sqa's librosa/transformers, which its end-to-end XLS-R model needs, not this one).

Why the package's network is rebuilt here (:func:`load_network`, :func:`network_mos`):
``distillmos/sqa.py``, the package's only module, imports torchaudio at its top, and
``import distillmos`` imports it, so the package cannot be imported here. Torchaudio serves
only its file inference, ``_infer_file_list`` (``torchaudio.load``, and
``torchaudio.transforms.Resample`` for a file not at 16 kHz); the network is torch alone.
tests/test_metrics_distillmos.py imports the package with a stand-in ``torchaudio`` module
and shows, bitwise, that its own ``ConvTransformerSQAModel`` gives the scores of mal's
network (the same modules, parameter names and steps as distillmos/sqa.py, version 0.9.1, so
the package's weights file loads into it strictly; the transformer and attention-pooling head
are xls_r_sqa's own ``SingleLayerModel``, whose module imports torch alone), and that its own file inference on a 16-kHz file (read with ``torchaudio.load``'s
float scaling, no resampling) gives those of :func:`distillmos`.

What it computes, as the package: the 16-kHz signal is zero-padded to 7.68 s, or cut into
7.68-s windows at hops of at most 1 s spread evenly over it; each window is peak-normalised
(so the input level does not matter) and scored; the score is the mean over the windows,
from 1 (bad) to 5 (excellent). Windows are scored ``WINDOW_BATCH`` at a time (the package
scores them all at once, its memory growing with the file's length).

mal's differences: a signal at another rate is resampled to 16 kHz with soxr
(:func:`mal.audio.resample`, as everywhere in mal) instead of torchaudio's sinc resampler, so
such a file's score differs slightly from the package's command line; a multi-channel file is
mixed to mono by :func:`mal.audio.read_audio` (the package's command line keeps the first
channel). torch is imported only when DistillMOS is scored (the runner's DNSMOS workers never
load it). The network runs on one torch thread, so the numbers are the same for any
``--jobs`` and any core count, as DNSMOS' one ONNX Runtime thread.

Speed (one thread of this project's 2-core CPU, measured once): a file up to 7.68 s is one
window, about 0.35 s; a longer one is one window per second beyond 6.7 s: 30 s of speech in
8.5 s (0.28 s per second of audio), 3 s in 0.33 s (0.11 s per second). Two windows per
forward pass were as fast as one, 8 (on 20 s of speech) 15 % slower.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from mal.audio import resample

DISTILLMOS_RATE = 16000
DISTILLMOS_METRICS = ("DistillMOS",)
WINDOW_BATCH = 2  # 7.68-s windows per forward pass (the fastest of 1, 2, 4, 8 here; the same scores)
# The package's constants (distillmos/sqa.py)
_N_LAYERS_CNN = 6
_CNN_FINAL_CHANNELS = 256
_N_HEADS = 8
_DIM_TRANSFORMER = 200
_N_LAYERS_TRANSFORMER = 7
_SEQ_LEN = 122880  # 7.68 s at 16 kHz
_MAX_HOP_LEN = 16000
_HOP, _WINDOW = 160, 320  # STFT: 10 ms, 20 ms
WEIGHTS_FILE = ("weights", "distill_mos_v7.pt")  # inside the distillmos package
INSTALL = "pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0"


def weights_path() -> Path | None:
    """The weights file inside the installed ``distillmos`` package (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec("distillmos")  # a top-level package: located, not executed
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*WEIGHTS_FILE)


def distillmos_unavailable(import_check: bool = True) -> str | None:
    """Why DistillMOS cannot run here, or None when it can.

    ``import_check``: also import xls_r_sqa's model (and torch, about 2 s); without it only
    the packages and the weights file are looked for, as the runner does before its workers score.
    """
    missing = [name for name in ("distillmos", "xls_r_sqa", "torch") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed; {INSTALL}"
    weights = weights_path()
    if weights is None or not weights.is_file():
        return f"the distillmos package has no weights file at {weights}; {INSTALL}"
    if import_check:
        try:
            import xls_r_sqa.sqa_model  # noqa: F401
        except Exception as err:
            return f"xls_r_sqa not importable ({type(err).__name__}: {err}); {INSTALL}"
    return None


def load_network(path: str | Path):
    """The package's ``ConvTransformerSQAModel`` with the weights of ``path`` (its ``distill_mos_v7.pt``), in eval mode.

    Its modules under their names: ``cnn.cnn``, six 3x3 convolutions with leaky ReLUs, and
    ``transformer_pool_attn``, xls_r_sqa's ``SingleLayerModel``; :func:`network_mos` runs them.
    """
    import torch  # start-up: torch loads only when DistillMOS is scored
    from torch import nn  # start-up: as torch above
    from xls_r_sqa.config import FEAT_SEQ_LEN, Config  # optional dependency: only DistillMOS needs xls_r_sqa
    from xls_r_sqa.sqa_model import SingleLayerModel  # optional dependency: as above

    layers: list = []
    fdim, channels = _WINDOW // 2 + 1, 2  # frequency bins; real and imaginary parts
    for i in range(_N_LAYERS_CNN):  # distillmos.sqa._ComplexSpecCNN
        out = min(64 * 2 ** max(i - 1, 0), _CNN_FINAL_CHANNELS)
        f_stride, t_stride = (2 if i >= 1 else 1), (2 if i == _N_LAYERS_CNN - 1 else 1)
        layers += [nn.Conv2d(channels, out, (3, 3), stride=(f_stride, t_stride), padding=(0, 1)), nn.LeakyReLU(0.1)]
        fdim, channels = (fdim - 3) // f_stride + 1, out
    config = Config("", None, feat_seq_len=FEAT_SEQ_LEN, dim_transformer=_DIM_TRANSFORMER, xlsr_name=None,
                    nhead_transformer=_N_HEADS, nlayers_transformer=_N_LAYERS_TRANSFORMER)
    config.dim_input = channels * fdim  # as the package overrides it
    net = nn.Module()
    net.cnn = nn.Module()
    net.cnn.cnn = nn.Sequential(*layers)
    net.transformer_pool_attn = SingleLayerModel(config)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # as the package loads it
    net.load_state_dict(checkpoint["model"])  # strict: the same architecture, or an error
    return net.eval()


def network_mos(net, x, window_batch: int | None = None):
    """``ConvTransformerSQAModel.forward``: MOS (B, 1), 1..5, of 16-kHz waveforms ``x`` (B, N), any N.

    The package's segmenting: shorter than 7.68 s, zero-padded to it; longer, 7.68-s windows
    at hops of at most 1 s, the first at the start, the last at the end; each window
    peak-normalised and scored, ``window_batch`` at a time (None: all at once, as the
    package); the mean over the windows.
    """
    import torch  # start-up: torch loads only when DistillMOS is scored
    import torch.nn.functional as F  # start-up: as torch above

    overlength = x.shape[1] - _SEQ_LEN
    if overlength < 0:
        x = F.pad(x, (0, -overlength))
        overlength = 0
    hops = int(np.ceil(overlength / _MAX_HOP_LEN)) + 1
    starts = [int(c * overlength) for c in np.linspace(0, 1, hops)]
    windows = torch.cat([x[:, s : s + _SEQ_LEN] for s in starts], dim=0)  # window-major, as the package
    step = window_batch or len(windows)
    quality = torch.cat([_window_quality(net, windows[i : i + step]) for i in range(0, len(windows), step)])
    return 1 + 4 * torch.mean(quality.reshape(hops, -1, 1), dim=0)


def _window_quality(net, windows):
    """Normalised quality (0..1) of 7.68-s windows (W, 122880) -> (W, 1)."""
    import torch  # start-up: torch loads only when DistillMOS is scored
    import torch.nn.functional as F  # start-up: as torch above

    windows = windows / (torch.max(torch.abs(windows), dim=1, keepdim=True).values + 1e-8)
    # distillmos.sqa._complex_compressed: reflect-padded STFT, magnitude compressed to the power 0.3
    pad = int((_WINDOW - _HOP) / 2)
    spec = torch.stft(F.pad(windows, (pad, pad), mode="reflect"), n_fft=_WINDOW, hop_length=_HOP, win_length=_WINDOW,
                      center=False, return_complex=True, window=torch.hann_window(_WINDOW).to(windows.device))
    spec = torch.view_as_real(spec)
    mag = torch.sum(spec**2, dim=-1, keepdim=True) ** 0.5
    compressed = torch.clip(mag, 1e-12) ** 0.3 * spec / torch.clip(mag, 1e-12)
    features = torch.flatten(net.cnn.cnn(compressed.permute(0, 3, 1, 2)), 1, -2)  # (W, channels x bins, frames)
    return net.transformer_pool_attn(features.permute(0, 2, 1))


class DistillMosScorer:
    """The network loaded once; ``score(samples, rate)`` gives ``{"DistillMOS": value}``.

    ``threads``: torch threads while scoring (None: torch's own setting; see the module note).
    """

    def __init__(self, threads: int | None = 1) -> None:
        if reason := distillmos_unavailable(import_check=False):
            raise FileNotFoundError(reason)
        self.net = load_network(weights_path())
        self.threads = threads

    def score(self, samples: np.ndarray, sample_rate: int) -> dict[str, float]:
        """DistillMOS of one mono signal (any rate, resampled to 16 kHz; any length)."""
        import torch  # start-up: torch loads only when DistillMOS is scored

        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError(f"DistillMOS needs one mono signal (1-D samples), got an array of shape {x.shape}")
        if x.size == 0:
            raise ValueError("DistillMOS: the signal has no samples")
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise ValueError("DistillMOS: the signal contains NaN, infinite or non-numeric samples")
        if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"DistillMOS: the sample rate must be a positive integer, got {sample_rate!r}")
        x = resample(x.astype(np.float32, copy=False), int(sample_rate), DISTILLMOS_RATE)
        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                mos = network_mos(self.net, torch.from_numpy(np.ascontiguousarray(x))[None], WINDOW_BATCH)
        finally:
            torch.set_num_threads(before)
        return {"DistillMOS": float(mos[0, 0])}


_SCORERS: dict[int | None, DistillMosScorer] = {}


def scorer(threads: int | None = 1) -> DistillMosScorer:
    """The process's DistillMosScorer for ``threads`` (made on first use)."""
    if threads not in _SCORERS:
        _SCORERS[threads] = DistillMosScorer(threads)
    return _SCORERS[threads]


def distillmos(samples: np.ndarray, sample_rate: int) -> dict[str, float]:
    """DistillMOS of one mono signal (any rate; resampled to 16 kHz)."""
    return scorer().score(samples, sample_rate)
