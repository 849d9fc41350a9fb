"""NISQA v2's frame-level features as a frozen deep-feature loss (Mittag et al., Interspeech 2021).

The official ``nisqa`` package computes its input with librosa (numpy): a 48-band mel
spectrogram in dB (magnitude STFT, 20 ms Hann window, 10 ms hop, 4096-point FFT, Slaney mel
up to 20 kHz, floor 1e-4, 80 dB below the maximum) cut into 15-frame segments every 4 frames.
:class:`NisqaMelSegments` is the same computation in torch, so gradients pass; the network
(its CNN, then its self-attention) is the package's own, with the weights of ``nisqa.tar``
(CC BY-NC-SA 4.0: read from where it lies, never copied into a checkpoint).

Each signal is first brought to -26 dBov P.56 active speech level, as :mod:`mal.evaluation.metrics.nisqa`
does before scoring. The P.56 activity decision is a step function of the signal, so it is
taken without gradient; the level is differentiable through the signal's energy
(:func:`active_level_normalize`), which is exact wherever the active set does not change.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mal.audio import active_speech_level
from mal.losses.frozen import FrozenFeatureLoss
from mal.util.assets import find_nisqa_weights

NISQA_RATE = 48000  # the loss resamples to this rate (the official code uses the file's own)
NISQA_LEVEL_DB = -26.0
LAYERS = ("cnn", "sa")


def active_level_normalize(wave: Tensor, sample_rate: int, target_db: float = NISQA_LEVEL_DB) -> Tensor:
    """Scale each row of ``wave`` (B, N) to ``target_db`` dBov P.56 active level, differentiably."""
    rows = []
    for x in wave:
        level = active_speech_level(x.detach().double().cpu().numpy(), sample_rate)
        if not np.isfinite(level):
            rows.append(x)  # silence stays as it is, as in normalize_active_level
            continue
        energy = x.square().sum()
        # level(x) = level(x0) + 10 log10(E(x) / E(x0)): equal at x0, gradient through the energy
        level_t = level + 10 * torch.log10(energy / energy.detach())
        rows.append(x * 10 ** ((target_db - level_t) / 20))
    return torch.stack(rows)


class NisqaMelSegments(nn.Module):
    """NISQA's librosa mel spectrogram and segmentation in torch: (B, N) -> (B, W, 1, mels, seg)."""

    def __init__(self, args: dict, sample_rate: int = NISQA_RATE):
        super().__init__()
        import librosa  # start-up: a heavy import, only the NISQA loss needs its mel filters

        self.n_fft = int(args["ms_n_fft"])
        self.hop = int(sample_rate * args["ms_hop_length"])
        self.win = int(sample_rate * args["ms_win_length"])
        self.seg_length, self.seg_hop = int(args["ms_seg_length"]), int(args["ms_seg_hop_length"])
        mel = librosa.filters.mel(sr=sample_rate, n_fft=self.n_fft, n_mels=int(args["ms_n_mels"]), fmin=0.0,
                                  fmax=args["ms_fmax"], htk=False, norm="slaney")
        self.register_buffer("mel", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win, periodic=True), persistent=False)

    def spectrogram(self, wave: Tensor) -> Tensor:
        """Mel spectrogram in dB (B, mels, T), as ``nisqa.NISQA_lib.get_librosa_melspec``."""
        spec = torch.stft(wave, self.n_fft, hop_length=self.hop, win_length=self.win, window=self.window.to(wave.dtype),
                          center=True, pad_mode="reflect", return_complex=True)
        magnitude = torch.sqrt(torch.view_as_real(spec).square().sum(-1) + 1e-20)  # eps: finite gradient at 0
        db = 20 * torch.log10(torch.clamp(self.mel.to(wave.dtype) @ magnitude, min=1e-4))
        top = db.amax(dim=(1, 2), keepdim=True) - 80.0
        return torch.maximum(db, top)

    def forward(self, wave: Tensor) -> Tensor:
        spec = self.spectrogram(wave)
        if spec.shape[-1] < self.seg_length:
            raise ValueError(f"NISQA needs at least {self.seg_length} frames ({(self.seg_length - 1) * self.hop} samples)")
        segments = spec.unfold(-1, self.seg_length, 1).permute(0, 2, 1, 3).unsqueeze(2)  # (B, W, 1, mels, seg)
        return segments[:, :: self.seg_hop]


def load_nisqa_network(weights: str | os.PathLike) -> tuple[nn.Module, dict]:
    """The package's ``NISQA_DIM`` with the weights of ``weights`` (nisqa.tar), and its args."""
    from nisqa import NISQA_lib  # optional: nisqa is installed apart (pip install --no-deps nisqa), only for this loss

    checkpoint = torch.load(Path(weights), map_location="cpu", weights_only=False)
    args = checkpoint["args"]
    if args.get("model") != "NISQA_DIM":
        raise ValueError(f"{weights}: a NISQA_DIM checkpoint (nisqa.tar) is needed, got {args.get('model')!r}")
    names = inspect.signature(NISQA_lib.NISQA_DIM).parameters
    network = NISQA_lib.NISQA_DIM(**{name: args[name] for name in names})
    network.load_state_dict(checkpoint["model_state_dict"], strict=True)
    return network, args


class NisqaFeatureLoss(FrozenFeatureLoss):
    """L1 between NISQA v2's frame features of clean and enhanced speech.

    Args:
        weights: path to ``nisqa.tar``; ``None`` looks where :func:`mal.util.assets.find_nisqa_weights` does
            (``$MAL_NISQA_WEIGHTS``, then the known places).
        layer: ``"cnn"`` = the CNN's per-segment output, ``"sa"`` = the self-attention output.
        sample_rate: rate of the waveforms given to ``forward`` (resampled to 48 kHz inside).
        normalize: bring each signal to -26 dBov active level first, as NISQA is scored.
    """

    def __init__(self, weights: str | os.PathLike | None = None, layer: str = "cnn", sample_rate: int = 16000,
                 normalize: bool = True):
        if layer not in LAYERS:
            raise ValueError(f"NISQA layer must be one of {LAYERS}, got {layer!r}")
        weights = find_nisqa_weights(weights)
        if weights is None or not weights.is_file():
            raise FileNotFoundError(f"NISQA weights not found ({weights}): set loss.ext.path or $MAL_NISQA_WEIGHTS to nisqa.tar")
        network, args = load_nisqa_network(weights)
        super().__init__(network, sample_rate, NISQA_RATE)
        self.layer, self.normalize, self.weights_path = layer, bool(normalize), weights
        self.segments = NisqaMelSegments(args, NISQA_RATE)

    def features(self, wave: Tensor) -> Tensor:
        """NISQA features (B, W, C) of ``wave`` (B, N) at ``sample_rate``."""
        x = wave.reshape(-1, wave.shape[-1])
        if self.normalize:
            x = active_level_normalize(x, self.sample_rate)
        segments = self.segments(self.resample(x))
        network = self.network
        b, w = segments.shape[:2]
        frames = network.cnn.model(segments.flatten(0, 1)).reshape(b, w, -1)  # Framewise without the packing
        if self.layer == "cnn":
            return frames
        n_wins = torch.full((b,), w, dtype=torch.long)
        return network.time_dependency(frames, n_wins)[0]
