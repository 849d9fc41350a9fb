"""DNSMOS P.835 (SIG/BAK/OVRL) and P.808 through the ``speechmos`` package.

``speechmos`` bundles Microsoft's ONNX models (DNS Challenge). Input is resampled to 16 kHz
and peak-normalised to -10 dBFS first, as the paper does for SIGMOS, so a system's output
level does not move its score.

Speed, with speechmos' numbers: ``DnsmosScorer`` makes the ONNX sessions once per process,
with one ONNX Runtime thread by default. speechmos scores 9.01-s windows at a 1-s hop (a
short file is repeated to 9.01 s first), each from scratch; four full-resolution 3x3
convolutions take about 95 % of the P.835 model's time (ORT profile) and neighbouring
windows share 8 of their 9 s. So the model is cut (``onnx.utils.Extractor``) around those
convolutions: they run once over the frames of consecutive windows, and only the 4
frames at each window edge, where the window's own zero padding matters, are computed
per window. With one thread the result is bitwise that of speechmos' window loop on
one-thread sessions (tests/test_scoring_speed.py); a model whose graph is not the expected one is scored
window by window by speechmos' own code.

Threads: ORT's float32 results depend on its thread count in the last bits (speechmos'
default sessions, one thread per core, and one-thread sessions differ by up to ~1e-7
relative on p232_016), so the scores of speechmos.dnsmos.run as such change with the
machine's core count. One thread everywhere makes them the same on every machine and for
every ``--jobs``; two cores are used by ``--jobs 2``. Batching windows instead does not help:
8 windows in one call took 1.7x as long as 8 calls (one thread, a loaded 2-core machine).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from mal.audio import peak_normalize, resample
from mal.util.files import atomic_path

DNSMOS_RATE = 16000
PEAK_DBFS = -10.0
DNSMOS_METRICS = ("DNSMOS-SIG", "DNSMOS-BAK", "DNSMOS-OVRL", "DNSMOS-P808")

# Where the P.835 graph (speechmos' dnsmos_models/sig_bak_ovr.onnx) is cut: per-frame
# log-power features (N, 900, 161), frames of 320 samples at a 160-sample hop; then the
# four 3x3 convolutions, output (N, 32, 900, 161); then the rest (pooling, dense layers).
_FEATURES = "mos_estimator_logpow/truediv:0"
_CONVOLVED = "mos_estimator_logpow/conv2d_3/Relu:0"
_FRAMES, _FRAME_HOP = 900, 160
_EXTEND = 300  # frames of convolutions computed per call beyond what the next window needs


def dnsmos_unavailable() -> str | None:
    """Why DNSMOS cannot run here, or None when it can."""
    try:
        import speechmos.dnsmos  # noqa: F401
    except Exception as err:  # ImportError, or a missing librosa/onnxruntime underneath
        return f"speechmos not importable ({type(err).__name__}: {err}); pip install speechmos librosa onnxruntime"
    return None


class DnsmosScorer:
    """speechmos' DNSMOS, sessions made once; ``score(samples, rate)`` gives the four values.

    ``threads``: ONNX Runtime intra-op threads (None: ORT's default, one per core, as
    speechmos' own sessions; see the module note on what the thread count changes).
    """

    def __init__(self, threads: int | None = 1) -> None:
        import onnxruntime as ort  # start-up: loaded only when DNSMOS is scored
        from speechmos import dnsmos as _dnsmos  # start-up: loaded only when DNSMOS is scored

        folder = Path(_dnsmos.__file__).resolve().parent / "dnsmos_models"  # the files speechmos.dnsmos.run loads
        primary, p808 = str(folder / "sig_bak_ovr.onnx"), str(folder / "model_v8.onnx")
        self._speechmos = _dnsmos
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._model = _with_options(_dnsmos.DNSMOS)(primary, p808, options)
        def sessions(parts: list[bytes] | None) -> list | None:
            return None if parts is None else [ort.InferenceSession(part, options) for part in parts]

        try:
            self._parts = sessions(_split_parts(primary))
        except Exception:  # a damaged cache entry: split the model again
            self._parts = sessions(_split_parts(primary, refresh=True))

    def score(self, samples: np.ndarray, sample_rate: int) -> dict[str, float]:
        """DNSMOS scores of one mono signal (any rate; resampled to 16 kHz)."""
        x = peak_normalize(resample(np.asarray(samples, dtype=np.float32), sample_rate, DNSMOS_RATE), PEAK_DBFS)
        x = np.clip(x, -1.0, 1.0)
        if self._parts is None:
            scores = self._model(x, DNSMOS_RATE, False)  # speechmos, window by window (False: not personalised, as run())
        else:
            scores = self._shared_windows(x)
        return {
            "DNSMOS-SIG": float(scores["sig_mos"]),
            "DNSMOS-BAK": float(scores["bak_mos"]),
            "DNSMOS-OVRL": float(scores["ovrl_mos"]),
            "DNSMOS-P808": float(scores["p808_mos"]),
        }

    def _shared_windows(self, audio: np.ndarray) -> dict:
        """speechmos' ``DNSMOS.__call__`` on an array, step for step, but for the P.835 model's convolutions."""
        model, fs, input_length = self._model, self._speechmos.SR, self._speechmos.INPUT_LENGTH
        if not ((audio >= -1).all() and (audio <= 1).all()):
            raise ValueError("np.ndarray values must be between -1 and 1.")
        len_samples = int(input_length * fs)
        while len(audio) < len_samples:
            audio = np.append(audio, audio)
        num_hops = int(np.floor(len(audio) / fs) - input_length) + 1
        # speechmos' windows, with its end int((idx + 9.01) * fs): for idx 7..23, 119.. it rounds one
        # sample short and speechmos skips the window; so does this
        segments = [(idx, audio[int(idx * fs) : int((idx + input_length) * fs)]) for idx in range(num_hops)]
        segments = [(idx, seg) for idx, seg in segments if len(seg) >= len_samples]
        if any(len(seg) != len_samples or (idx * fs) % _FRAME_HOP for idx, seg in segments):
            return model(audio, fs, False)  # not the frame grid the sharing assumes: speechmos' own loop
        raw = self._primary_raw(audio, [idx for idx, _ in segments], fs, len_samples)
        sig, bak, ovr, p808 = [], [], [], []
        for (_, seg), (sig_raw, bak_raw, ovr_raw) in zip(segments, raw):
            p808_input = np.array(model.audio_melspec(audio=seg[:-160])).astype("float32")[np.newaxis, :, :]
            p808.append(model.p808_onnx_sess.run(None, {"input_1": p808_input})[0][0][0])
            values = model.get_polyfit_val(sig_raw, bak_raw, ovr_raw, False)
            for target, value in zip((sig, bak, ovr), values):
                target.append(value)
        return {"ovrl_mos": np.mean(ovr), "sig_mos": np.mean(sig), "bak_mos": np.mean(bak), "p808_mos": np.mean(p808)}

    def _primary_raw(self, audio: np.ndarray, starts: list[int], fs: int, len_samples: int) -> list:
        """The P.835 model's raw (sig, bak, ovr) for the windows starting at ``starts`` seconds."""
        features, convolutions, head = self._parts
        step = fs // _FRAME_HOP  # frames between window starts

        def window(idx: int) -> np.ndarray:
            begin = int(idx * fs)
            return np.array(audio[begin : begin + len_samples]).astype("float32")[np.newaxis, :]

        def convolve(frames: np.ndarray) -> np.ndarray:  # (T, 161) or (N, T, 161) -> (N, 32, T, 161)
            return convolutions.run(None, {_FEATURES: frames if frames.ndim == 3 else frames[np.newaxis]})[0]

        out = []
        for run in _consecutive(starts):  # runs of windows one hop apart share their frames
            n_frames = step * (run[-1] - run[0]) + _FRAMES
            frames = np.empty((n_frames, 161), np.float32)
            for idx in sorted(set(run[:: _FRAMES // step]) | {run[-1]}):  # windows 9 apart cover every frame
                offset = step * (idx - run[0])
                frames[offset : offset + _FRAMES] = features.run(None, {"input_1": window(idx)})[0][0]
            done = np.empty((1, 32, 0, 161), np.float32)  # convolved frames [done_from, done_from + len)
            done_from = 0
            for idx in run:
                offset = step * (idx - run[0])
                done = done[:, :, offset - done_from :]
                done_from = offset
                have = offset + done.shape[2]
                if have < offset + _FRAMES:  # extend: frames [have, stop) with HALO frames of context each side
                    stop = min(n_frames, offset + _FRAMES + _EXTEND)
                    lo, hi = max(0, have - _HALO), min(n_frames, stop + _HALO)
                    new = convolve(frames[lo:hi])[:, :, have - lo : stop - lo]
                    done = np.concatenate([done, new], axis=2)
                convolved = done[:, :, :_FRAMES].copy()
                # the window's first and last HALO frames see its own zero padding: from the window's edges alone
                edges = convolve(np.stack([frames[offset : offset + 2 * _HALO],
                                           frames[offset + _FRAMES - 2 * _HALO : offset + _FRAMES]]))
                convolved[:, :, :_HALO] = edges[0, :, :_HALO]
                convolved[:, :, _FRAMES - _HALO :] = edges[1, :, _HALO:]
                out.append(head.run(None, {_CONVOLVED: convolved})[0][0])
        return out


_HALO = 4  # frames each side one output frame of the four 3x3 convolutions depends on (checked in _split_primary)


def _consecutive(starts: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for idx in starts:
        if runs and idx == runs[-1][-1] + 1:
            runs[-1].append(idx)
        else:
            runs.append([idx])
    return runs


_PART_NAMES = ("features", "convolutions", "head")
_SPLIT_VERSION = 1  # bump when _split_primary changes what it makes
ENV_CACHE = "MAL_CACHE_DIR"


def cache_dir() -> Path:
    """Where mal keeps files it derives and can remake: ``$MAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/mal``
    (``~/.cache/mal``)."""
    chosen = os.environ.get(ENV_CACHE)
    if chosen:
        return Path(chosen).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "mal"


def _split_parts(path: str, refresh: bool = False) -> list[bytes] | None:
    """The three parts of ``_split_primary`` as serialised ONNX graphs, from the cache when there.

    Splitting needs the ``onnx`` package, whose import takes about 1.2 s (its ml_dtypes
    extension) in every process that scores DNSMOS; the parts depend only on the model
    file, so they are kept under ``cache_dir()``, named by the model's SHA-256 and this
    code's split version, and a later process reads them back (an unreadable or damaged
    entry, ``refresh``, is remade). Without a writable cache folder the split is made in memory.
    """
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    files = [cache_dir() / "dnsmos" / f"sig_bak_ovr-{digest}-v{_SPLIT_VERSION}-{name}.onnx" for name in _PART_NAMES]
    if not refresh:
        try:
            cached = [f.read_bytes() for f in files]
            if all(cached):
                return cached
        except OSError:
            pass
    parts = _split_primary(path)
    if parts is None:
        return None
    serialised = [part.SerializeToString() for part in parts]
    try:
        for file, data in zip(files, serialised):
            with atomic_path(file) as tmp:
                tmp.write_bytes(data)
    except OSError:
        pass  # a read-only or full disk: the in-memory split serves this process
    return serialised


def _split_primary(path: str):
    """(features, convolutions, head) parts of the P.835 graph, or None when it is not the expected graph."""
    try:
        import onnx  # start-up: about 1.2 s, loaded only when the split is not cached
        from onnx.utils import Extractor  # start-up: as onnx above

        model = onnx.shape_inference.infer_shapes(onnx.load(path))
        extractor = Extractor(model)
        features = extractor.extract_model([model.graph.input[0].name], [_FEATURES])
        convolutions = extractor.extract_model([_FEATURES], [_CONVOLVED])
        head = extractor.extract_model([_CONVOLVED], [model.graph.output[0].name])
    except Exception:  # no onnx, other names or structure: speechmos' own window loop
        return None
    # features: per 320-sample frame (1x1 convolutions, element-wise maths); then exactly
    # _HALO stride-1 3x3 convolutions with 1 frame of padding (each reaches one frame
    # further), ReLUs and layout ops; anything else and sharing frames would not be exact
    frame_local = {"Slice", "Reshape", "Concat", "Transpose", "Conv", "Mul", "Add", "Sqrt", "Pow", "Max", "Log", "Div"}
    if any(n.op_type not in frame_local or (n.op_type == "Conv" and _attrs(n).get("kernel_shape") != [1])
           for n in features.graph.node):
        return None
    convs = [n for n in convolutions.graph.node if n.op_type == "Conv"]
    expected = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1], "dilations": [1, 1], "group": 1}
    if (len(convs) != _HALO or any({k: _attrs(n).get(k) for k in expected} != expected for n in convs)
            or any(n.op_type not in {"Conv", "Relu", "Unsqueeze", "Transpose"} for n in convolutions.graph.node)):
        return None
    # the convolutions part takes any number of frames
    del convolutions.graph.value_info[:]
    for value, axis in ((convolutions.graph.input[0], 1), (convolutions.graph.output[0], 2)):
        dim = value.type.tensor_type.shape.dim[axis]
        dim.ClearField("dim_value")
        dim.dim_param = "frames"
    return features, convolutions, head


def _attrs(node) -> dict:
    from onnx import helper  # start-up: onnx loads only when the graph is split

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _with_options(base):
    """speechmos' DNSMOS class with its two sessions made with ``options`` (its __init__ takes none)."""
    import onnxruntime as ort  # start-up: loaded only when DNSMOS is scored

    class DNSMOSWithOptions(base):
        def __init__(self, primary_model_path: str, p808_model_path: str, options) -> None:
            self.primary_model_path = primary_model_path
            self.onnx_sess = ort.InferenceSession(primary_model_path, options)
            self.p808_onnx_sess = ort.InferenceSession(p808_model_path, options)

    return DNSMOSWithOptions


_SCORERS: dict[int | None, DnsmosScorer] = {}


def scorer(threads: int | None = 1) -> DnsmosScorer:
    """The process's DnsmosScorer for ``threads`` (made on first use)."""
    if threads not in _SCORERS:
        _SCORERS[threads] = DnsmosScorer(threads)
    return _SCORERS[threads]


def dnsmos(samples: np.ndarray, sample_rate: int) -> dict[str, float]:
    """DNSMOS scores of one mono signal (any rate; resampled to 16 kHz)."""
    return scorer().score(samples, sample_rate)
