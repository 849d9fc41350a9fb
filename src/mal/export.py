"""ONNX export of one DFNet streaming step, and an onnxruntime stream with the same API.

The graph is :class:`mal.streaming.StreamingDFNet`: inputs ``frame`` (1, hop), ``valid``
(1,) and the states of :data:`mal.streaming.STATE_NAMES`; outputs ``out`` (1, hop) and
``new_<state>`` for each state. What a runner needs besides the graph (rate, hop,
look-ahead, delay, which states restart after the warm-up, non-zero initial states) is in
the model's metadata under the key ``mal_stream``.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from mal.models.dfnet import DFNet
from mal.streaming import NETWORK_STATES, STATE_NAMES, FrameStream, StreamingDFNet

METADATA_KEY = "mal_stream"
FORMAT = "mal-dfnet-stream/1"


def export_onnx(model: DFNet, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write ``model``'s streaming step to ``path`` as ONNX (atomically); returns the path."""
    import onnx

    from mal.models.deepfilternet import DeepFilterNet

    if isinstance(model, DeepFilterNet):
        from mal.export_dfn import export_deepfilternet

        return export_deepfilternet(model, path, opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    model = copy.deepcopy(model).cpu().eval()  # leave the caller's model where and as it is
    try:
        step = StreamingDFNet(model)
        states = step.initial_states(batch=1)
        args = (torch.zeros(1, model.cfg.hop), torch.ones(1), *states.values())
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            torch.onnx.export(
                step, args, str(tmp), dynamo=False, opset_version=opset,
                input_names=["frame", "valid", *STATE_NAMES],
                output_names=["out", *(f"new_{name}" for name in STATE_NAMES)],
            )
        graph = onnx.load(str(tmp))
        meta = {
            "format": FORMAT,
            "sample_rate": model.cfg.sample_rate,
            "hop": model.cfg.hop,
            "n_fft": model.cfg.n_fft,
            "lookahead": model.cfg.lookahead,
            "delay_samples": step.delay_samples,
            "latency_samples": step.latency_samples,
            "states": list(STATE_NAMES),
            "network_states": list(NETWORK_STATES),
            "initial_states": {k: v[0].tolist() for k, v in states.items() if k in ("erb_norm", "spec_norm")},
            "model": model.config_dict(),
        }
        onnx.helper.set_model_props(graph, {METADATA_KEY: json.dumps(meta)})
        onnx.save(graph, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def open_session(path: str | os.PathLike, num_threads: int = 1):
    """(onnxruntime session, mal metadata) of an exported stream; one-line errors for bad files."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX model not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...) for a bad file
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path}: not a readable ONNX model ({type(err).__name__}: {reason[:160]})") from None
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a mal streaming export (no '{METADATA_KEY}' metadata)")
    return session, json.loads(raw)


def open_stream(path: str | os.PathLike, num_threads: int = 1):
    """The onnxruntime stream for any mal export (DFNet or DeepFilterNet)."""
    from mal.export_dfn import FORMAT as DFN_FORMAT, DeepFilterNetOnnxStream

    _, meta = open_session(path, num_threads)
    if meta.get("format") == DFN_FORMAT:
        return DeepFilterNetOnnxStream(path, num_threads)
    return OnnxStream(path, num_threads)


class OnnxStream(FrameStream):
    """onnxruntime stream over an exported step: ``process(hop samples) -> hop samples``, ``flush()``."""

    def __init__(self, path: str | os.PathLike, num_threads: int = 1):
        self.session, meta = open_session(path, num_threads)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: unsupported export format {meta.get('format')!r}, expected {FORMAT}")
        self.meta = meta
        self.hop, self.lookahead, self.sample_rate = meta["hop"], meta["lookahead"], meta["sample_rate"]
        self.delay_samples, self.latency_samples = meta["delay_samples"], meta["latency_samples"]
        self._names = meta["states"]
        self._shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self._outputs = ["out", *(f"new_{name}" for name in self._names)]
        self._valid = {1.0: np.ones(1, np.float32), 0.0: np.zeros(1, np.float32)}
        super().__init__()

    def _initial_state(self, name: str) -> np.ndarray:
        values = self.meta["initial_states"].get(name)
        if values is not None:
            return np.asarray(values, dtype=np.float32).reshape(self._shapes[name])
        return np.zeros(self._shapes[name], dtype=np.float32)

    def _initial_states(self) -> list[np.ndarray]:
        return [self._initial_state(name) for name in self._names]

    def _step(self, frame: np.ndarray, valid: float) -> np.ndarray:
        feed = {"frame": frame[None], "valid": self._valid[valid], **dict(zip(self._names, self._states))}
        out, *self._states = self.session.run(self._outputs, feed)
        return out[0]

    def _reset_network_states(self) -> None:
        for i, name in enumerate(self._names):
            if name in self.meta["network_states"]:
                self._states[i] = self._initial_state(name)

    def _ola_tail(self) -> np.ndarray:
        return self._states[self._names.index("ola")][0]
