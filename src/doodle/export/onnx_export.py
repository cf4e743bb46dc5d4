"""A finished run's network -> ONNX bytes (fp32), its doodle metadata, and static int8 quantisation.

The graph takes what the engine feeds the network (`engine.to_input`): an image model takes `image`,
float32 (N, C, H, W) = the rasteriser's uint8 output / 255; a sequence model takes `seq`, float32 (N, L, F),
and `seq_len`, int64 (N,). The batch is dynamic, and so is L. The output is `logits` (N, classes).
Everything the rasteriser or the sequence encoder needs is in the metadata (`doodle.config`), so a loader
renders exactly as training did. int8 is onnxruntime's static QDQ quantisation, plus weight-only int8 (standard
ONNX ops) for the weights it leaves in float: the recurrent layers' and those of the nodes kept computing in float.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from doodle.predict.exported import INPUT_NAMES, META, ONNX_FORMAT
from doodle.predict.loaded_run import LoadedRun
from doodle.predict.package import ExportError
from doodle.render.sequence import feature_names

OPSET = 17


def dummy_inputs(lr: LoadedRun) -> tuple[torch.Tensor, ...]:
    """Inputs of the traced shape: 2 drawings (and 2 lengths, one shorter, for a sequence model)."""
    if lr.input_kind == "sequence":
        n_feat = len(feature_names(lr.cfg.seq.time))
        return torch.rand(2, 12, n_feat), torch.tensor([12, 5])
    s = lr.spec
    return (torch.rand(2, s.channels, s.size, s.size),)


def onnx_bytes(lr: LoadedRun) -> bytes:
    """The run's network as ONNX (TorchScript exporter: it writes RNNs as ONNX GRU ops, with dynamic axes)."""
    names = INPUT_NAMES[lr.input_kind]
    dynamic = {n: ({0: "batch", 1: "length"} if n == "seq" else {0: "batch"}) for n in names}
    dynamic["logits"] = {0: "batch"}
    buf = io.BytesIO()
    model = lr.model.cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice of this exporter, tracer notes on shapes
        # Grad mode on: the sequence models then take their padded-batch GRU path (exact on every valid step,
        # see models.sequence.BiGRU), which ONNX expresses; the no-grad path packs sequences, which it cannot.
        with torch.enable_grad():
            torch.onnx.export(model, dummy_inputs(lr), buf, dynamo=False, input_names=list(names),
                              output_names=["logits"], dynamic_axes=dynamic, opset_version=OPSET)
    return buf.getvalue()


def with_metadata(data: bytes, meta: dict[str, object]) -> bytes:
    """ONNX bytes with our keys (`doodle.<key>`; values that are not strings as JSON) in metadata_props."""
    import onnx

    model = onnx.load_model_from_string(data)
    kept = [p for p in model.metadata_props if not p.key.startswith(META)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in {"format": ONNX_FORMAT, **meta}.items():
        p = model.metadata_props.add()
        p.key, p.value = META + key, value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return model.SerializeToString()


def export_metadata(lr: LoadedRun, precision: str, metrics: dict, checks: dict, export_commit: str) -> dict:
    """What a loader (ours or anyone's) needs: classes, resolved config, raster / sequence settings, run facts."""
    cfg = lr.cfg.to_dict()
    meta = {"precision": precision, "input_kind": lr.input_kind, "classes": lr.classes, "config": cfg,
            "run": lr.facts, "metrics": metrics, "checks": checks, "commit": str(lr.facts.get("commit", "unknown")),
            "export_commit": export_commit, "inputs": INPUT_DOC[lr.input_kind],
            "temperature": lr.temperature}  # calibrated probabilities: softmax(logits / temperature)
    if lr.input_kind == "image":
        meta["raster"] = {**cfg["raster"], "size": lr.spec.size, "channels": list(lr.spec.feature_ids().tolist())}
    else:
        meta["sequence"] = {**cfg["seq"], "features": list(feature_names(lr.cfg.seq.time))}
    return meta


INPUT_DOC = {
    "image": "image: float32 (N, C, H, W), the doodle rasteriser's uint8 (H, W, C) / 255 with doodle.raster",
    "sequence": "seq: float32 (N, L, F) from doodle.render.sequence.encode_sequences with doodle.sequence; "
                "seq_len: int64 (N,) valid steps (>= 1)",
}


def head_and_stem(data: bytes) -> list[str]:
    """Nodes that compute in float in `quantize_int8` (their weights are still stored int8): the first convolution
    and the final classifier (see README)."""
    import onnx

    nodes = onnx.load_model_from_string(data).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    heads = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]
    return convs[:1] + heads[-1:]


RECURRENT = ("GRU", "LSTM", "RNN")  # ONNX's recurrent ops: inputs 1 W [D, G*H, in], 2 R [D, G*H, H], 3 B [D, 2*G*H]
WEIGHTED = ("Conv", "Gemm", "MatMul")  # input 1: Conv [out, in, k...], Gemm [out, in] (transB) or [in, out], MatMul [in, out]


def int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row of a 2-D float array -> (q int8 in -127..127, scale float32): w ~= q * scale[:, None]."""
    peak = np.abs(w).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    return np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), scale


def all_nodes(graph) -> Iterator:
    """The graph's nodes and those of its subgraphs (If / Loop / Scan bodies), depth first."""
    for node in graph.node:
        yield node
        for a in node.attribute:
            for g in [a.g] if a.HasField("g") else list(a.graphs):
                yield from all_nodes(g)


def attr(node, name: str, default: int = 0) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def weight_view(node, k: int, dims: list[int]) -> tuple[tuple[int, int], int] | None:
    """How input `k` (a float initializer of shape `dims`) of `node` is quantised: (the 2-D view it is reshaped to,
    the axis of that view that runs over output units: 0 rows, 1 columns), one scale per output unit; None for an
    input that is no weight of a kind known here (biases of Conv / Gemm among them)."""
    op, rank = node.op_type, len(dims)
    if not dims or min(dims) <= 0:
        return None
    if op in RECURRENT and k in (1, 2) and rank == 3:  # a row: one gate's output unit in one direction
        return (dims[0] * dims[1], dims[2]), 0
    hidden = attr(node, "hidden_size")
    if op in RECURRENT and k == 3 and rank == 2 and hidden > 0 and dims[1] % hidden == 0:  # a row: one gate's bias
        return (dims[0] * dims[1] // hidden, hidden), 0
    if op == "Conv" and k == 1 and rank >= 3:  # per output channel, on [out, in * kh * kw]
        return (dims[0], int(np.prod(dims[1:]))), 0
    if op == "Gemm" and k == 1 and rank == 2:  # B is [out, in] with transB = 1, [in, out] without
        return (dims[0], dims[1]), 0 if attr(node, "transB") else 1
    if op == "MatMul" and k == 1 and rank == 2:  # x @ W, W [in, out]: per column
        return (dims[0], dims[1]), 1
    return None


def weight_only_inputs(data: bytes, nodes: Iterable[str] = ()) -> list[tuple[str, int]]:
    """(node name, input index) of the weights `int8_weights` should store as int8: W, R and B of every GRU / LSTM /
    RNN node, and input 1 (the weight) of each of `nodes` that is a Conv, Gemm or MatMul."""
    import onnx

    wanted, picks = set(nodes), []
    for node in onnx.load_model_from_string(data).graph.node:
        if node.op_type in RECURRENT:
            picks += [(node.name, k) for k in range(1, min(4, len(node.input))) if node.input[k]]
        elif node.op_type in WEIGHTED and node.name in wanted and len(node.input) > 1:
            picks.append((node.name, 1))
    return picks


def int8_weights(data: bytes, picks: Iterable[tuple[str, int]]) -> tuple[bytes, list[str]]:
    """Weight-only int8: input k of node `name`, for each (name, k) in `picks`, stored as int8 while the node still
    computes in float.

    Each such weight (a float initializer whose `weight_view` is known and that nothing but picked inputs reads, no
    graph input or output) becomes an int8 initializer in its 2-D view with one float scale per output unit
    (symmetric, zero point 0: a row of a Conv's [out, in*kh*kw], of a Gemm's B with transB, of a recurrent W, R
    or B; a column of a MatMul's W or a Gemm's B without transB), turned back into the float weight in the graph
    by standard ONNX ops: `Cast` to float, `Mul` by the scales (a column [rows, 1] or a row [1, cols]) and, when
    the node's weight is not that 2-D view, a `Reshape`. That is DequantizeLinear's arithmetic (q * scale), but
    onnxruntime folds these constant nodes into a float initializer when it loads the model, which it does not do
    for a DequantizeLinear (kept for its QDQ fusions): then the node would get a weight computed on every run,
    unpacked, and kernels picked by batch size, whose last-bit differences flip later activations' uint8 steps,
    so a drawing's logits would depend on the batch it came in (README, "Which nodes compute in float in int8").
    -> (bytes, the names of the rewritten nodes, in graph order); `data` itself when nothing is rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_model_from_string(data)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    named: dict[str, list] = {}
    for node in graph.node:
        named.setdefault(node.name, []).append(node)
    by_name = {name: ns[0] for name, ns in named.items() if name and len(ns) == 1}  # others: no pick can say which
    uses: dict[str, int] = {}
    for node in all_nodes(graph):
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    views: dict[str, tuple[tuple[int, int], int] | None] = {}
    picked_uses: dict[str, int] = {}
    for node_name, k in picks:
        node = by_name.get(node_name)
        if node is None or k >= len(node.input) or not node.input[k]:
            continue
        name = node.input[k]
        picked_uses[name] = picked_uses.get(name, 0) + 1
        t = inits.get(name)
        view = weight_view(node, k, list(t.dims)) if t is not None and t.data_type == onnx.TensorProto.FLOAT else None
        views[name] = view if views.get(name, view) == view else None  # read in two ways: left as it is
    io = {v.name for v in [*graph.input, *graph.output]}
    weights = {n: v for n, v in views.items() if v and picked_uses[n] == uses[n] and n not in io}
    if not weights:
        return data, []
    rebuild, kept = [], []
    for t in graph.initializer:
        if t.name not in weights:
            kept.append(t)
            continue
        (shape2d, axis), w = weights[t.name], numpy_helper.to_array(t)
        q, scale = int8_rows(w.reshape(shape2d).T if axis else w.reshape(shape2d))
        base, reshape = t.name + "_int8", list(w.shape) != list(shape2d)
        kept += [numpy_helper.from_array(np.ascontiguousarray(q.T) if axis else q, base),
                 numpy_helper.from_array(scale.reshape((1, -1) if axis else (-1, 1)), base + "_scale")]
        rebuild += [helper.make_node("Cast", [base], [base + "_cast"], to=onnx.TensorProto.FLOAT, name=base + "_Cast"),
                    helper.make_node("Mul", [base + "_cast", base + "_scale"], [base + ("_rows" if reshape else "_float")],
                                     name=base + "_Mul")]
        if reshape:
            kept.append(numpy_helper.from_array(np.array(w.shape, np.int64), base + "_shape"))
            rebuild.append(helper.make_node("Reshape", [base + "_rows", base + "_shape"], [base + "_float"],
                                            name=base + "_Reshape"))
    rewritten = []
    for node in graph.node:
        ks = [k for k, name in enumerate(node.input) if name in weights]
        if ks:
            rewritten.append(node.name)
        for k in ks:
            node.input[k] += "_int8_float"
    nodes = rebuild + list(graph.node)  # the new nodes read initializers only: first is a topological order
    del graph.initializer[:], graph.node[:]
    graph.initializer.extend(kept)
    graph.node.extend(nodes)
    return model.SerializeToString(), rewritten


def quantize_int8(fp32: bytes, calibration: list[dict[str, np.ndarray]],
                  keep_float: bool = True) -> tuple[bytes, list[str], list[str]]:
    """Static int8 (QDQ, per-channel int8 weights, uint8 activations, min-max calibration on `calibration`),
    except `head_and_stem` when `keep_float`; then weight-only int8 (`int8_weights`) for what that left float: the
    weights of those nodes and of the recurrent nodes, which onnxruntime's quantiser has no int8 form for
    -> (bytes, the names of the nodes computing in float on purpose, the names of the nodes given int8 weights)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calibration)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(fp32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            kept = head_and_stem(pre.read_bytes()) if keep_float else []
            quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=kept)
        if not out.is_file():
            raise ExportError("onnxruntime quantisation wrote no model")
        data = out.read_bytes()
        data, weight_only = int8_weights(data, weight_only_inputs(data, kept))
        return data, kept, weight_only
