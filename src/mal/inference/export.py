"""ONNX export of one streaming step of a DeepFilterNet-family model, and its onnxruntime stream.

The graph is :meth:`DeepFilterNet.frames` itself on one hop (its FFTs as matrix products),
so the exported step is the offline computation by construction. Inputs ``frame`` (B, hop)
and the states (names in the metadata, in order; B streams along each state's batch axis);
outputs ``out`` (B, hop) and ``new_<state>``. The same graph serves one stream
(:class:`OnnxStream`) and many at once (``mal serve``'s engine, through :func:`step_session`). What a runner needs besides the graph (rate, hop, delay, latency, the state
names and their non-zero initial values, the model's config) is in the model's metadata
under the key ``mal_stream``. :class:`OnnxStream` follows the one stream protocol of
:mod:`mal.inference.stream`.
"""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mal.models import DeepFilterNet
from mal.inference.stream import HopStream

METADATA_KEY = "mal_stream"
FORMAT = "mal-deepfilternet-stream/1"


class _Step(nn.Module):
    def __init__(self, model: DeepFilterNet, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, frame: torch.Tensor, *states: torch.Tensor):
        out, new = self.model.frames(frame, dict(zip(self.names, states)))
        return (out, *(new[n] for n in self.names))


def batch_axes(model: DeepFilterNet) -> dict[str, int]:
    """The batch axis of each of ``model``'s stream states (where its size goes from 1 to 2)."""
    one, two = model.initial_state(1), model.initial_state(2)
    return {k: next(i for i, (a, b) in enumerate(zip(one[k].shape, two[k].shape)) if a != b) for k in one}


def _trace_step(model: DeepFilterNet, target, opset: int) -> tuple[DeepFilterNet, list[str], dict]:
    """Trace one streaming step of a copy of ``model`` into ``target`` (a path or a binary buffer),
    its batch axis dynamic (traced on two rows, so that no size-1 axis is taken for a constant).
    Returns (the copy, the state names, the states of one row)."""
    if not isinstance(model, DeepFilterNet):
        raise ValueError(f"ONNX export needs a DeepFilterNet-family model, got {type(model).__name__}")
    model = copy.deepcopy(model).cpu().eval()
    model.use_dft_matrices()
    states, axes = model.initial_state(2), batch_axes(model)
    names = list(states)
    dynamic = {"frame": {0: "batch"}, "out": {0: "batch"}}
    for n in names:
        dynamic[n] = dynamic[f"new_{n}"] = {axes[n]: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            _Step(model, names), (torch.zeros(2, model.cfg.hop), *states.values()), target, dynamo=False,
            opset_version=opset, input_names=["frame", *names], output_names=["out", *(f"new_{n}" for n in names)],
            dynamic_axes=dynamic,
        )
    return model, names, model.initial_state(1)


def export_onnx(model: DeepFilterNet, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write ``model``'s streaming step to ``path`` (atomically); returns the path. The graph takes
    any number of streams at once (its first axis, and each state's ``batch_axes``)."""
    import onnx  # start-up: onnx takes about 0.8 s to import, only export needs it

    if not isinstance(model, DeepFilterNet):
        raise ValueError(f"ONNX export needs a DeepFilterNet-family model, got {type(model).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    try:
        model, names, states = _trace_step(model, str(tmp), opset)
        graph = onnx.load(str(tmp))
        meta = {
            "format": FORMAT, "sample_rate": model.cfg.sample_rate, "hop": model.cfg.hop,
            "delay_samples": (model.delay_frames + 1) * model.cfg.hop,
            "latency_samples": model.cfg.n_fft + model.delay_frames * model.cfg.hop, "states": names,
            "batch_axes": batch_axes(model),
            "initial_states": {k: v.reshape(-1).tolist() for k, v in states.items() if v.abs().max() > 0},
            "model": model.config_dict(), "licence": getattr(model, "metadata", {}).get("licence", ""),
        }
        onnx.helper.set_model_props(graph, {METADATA_KEY: json.dumps(meta)})
        onnx.save(graph, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def step_session(model: DeepFilterNet, num_threads: int = 1, opset: int = 17):
    """An onnxruntime session of ``model``'s streaming step, made in memory (no file), for many
    streams at once (:class:`mal.serve.engine.Engine`). Returns (session, state names, batch axes,
    the states of one row as arrays)."""
    buffer = io.BytesIO()
    model, names, states = _trace_step(model, buffer, opset)
    session = _session(buffer.getvalue(), num_threads)
    return session, names, batch_axes(model), {k: v.numpy() for k, v in states.items()}


def _session(source, num_threads: int):
    import onnxruntime as ort  # start-up: loaded only when an exported stream is run

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def open_session(path: str | os.PathLike, num_threads: int = 1):
    """(onnxruntime session, mal metadata) of an exported stream; one-line errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX model not found")
    try:
        session = _session(str(path), num_threads)
    except Exception as err:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...) for a bad file
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path}: not a readable ONNX model ({type(err).__name__}: {reason[:160]})") from None
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a mal streaming export (no '{METADATA_KEY}' metadata)")
    return session, json.loads(raw)


class OnnxStream(HopStream):
    """onnxruntime stream over an exported DeepFilterNet step: ``process(hop) -> hop``, ``flush()``."""

    def __init__(self, path: str | os.PathLike, num_threads: int = 1):
        self.session, meta = open_session(path, num_threads)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: unsupported export format {meta.get('format')!r}, expected {FORMAT}")
        self.meta = meta
        self.hop, self.sample_rate = meta["hop"], meta["sample_rate"]
        self.delay_samples, self.latency_samples = meta["delay_samples"], meta["latency_samples"]
        self._names = meta["states"]
        # one stream: a dynamic (named) batch axis is 1 here
        shapes = {i.name: [d if isinstance(d, int) else 1 for d in i.shape] for i in self.session.get_inputs()}
        self._initial = {
            n: np.asarray(meta["initial_states"].get(n, np.zeros(int(np.prod(shapes[n])))), np.float32).reshape(shapes[n])
            for n in self._names
        }
        self._outputs = ["out", *(f"new_{n}" for n in self._names)]
        self._bind()
        self.reset()

    def _bind(self) -> None:
        """Two I/O bindings over fixed buffers, the states ping-ponging between them.

        Each hop then runs with ``run_with_iobinding`` on buffers bound once: no feed dict,
        no new output arrays; the same computation, bitwise (tests/test_deepfilternet.py),
        about 5 % less time per hop than ``session.run`` (measured, interleaved).
        """
        import onnxruntime as ort  # start-up: loaded only when an exported stream is run

        self._frame = np.zeros((1, self.hop), np.float32)
        self._out = np.zeros((1, self.hop), np.float32)
        self._buffers = [[np.zeros_like(v) for v in self._initial.values()] for _ in range(2)]
        frame, out = ort.OrtValue.ortvalue_from_numpy(self._frame), ort.OrtValue.ortvalue_from_numpy(self._out)
        values = [[ort.OrtValue.ortvalue_from_numpy(b) for b in side] for side in self._buffers]
        self._bindings = []
        for k in range(2):  # binding k reads the states from side k and writes them to side 1 - k
            binding = self.session.io_binding()
            binding.bind_ortvalue_input("frame", frame)
            binding.bind_ortvalue_output("out", out)
            for name, read, write in zip(self._names, values[k], values[1 - k]):
                binding.bind_ortvalue_input(name, read)
                binding.bind_ortvalue_output(f"new_{name}", write)
            self._bindings.append(binding)

    def _initial_state(self) -> int:
        for buffer, value in zip(self._buffers[0], self._initial.values()):
            buffer[...] = value
        return 0  # the side that holds the current states

    def _run(self, frame: np.ndarray) -> np.ndarray:
        blocks = np.empty(len(frame), np.float32)
        for i in range(0, len(frame), self.hop):  # the graph takes one hop
            self._frame[0] = frame[i : i + self.hop]
            self.session.run_with_iobinding(self._bindings[self._state])
            self._state = 1 - self._state
            blocks[i : i + self.hop] = self._out[0]
        return blocks


def open_stream(path: str | os.PathLike, num_threads: int = 1) -> OnnxStream:
    """The onnxruntime stream of an exported model (``mal export``)."""
    return OnnxStream(path, num_threads)
