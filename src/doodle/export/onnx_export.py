"""A finished run's network -> ONNX bytes (fp32), its doodle metadata, and static int8 quantisation.

The graph takes what the engine feeds the network (`engine.to_input`): an image model takes `image`,
float32 (N, C, H, W) = the rasteriser's uint8 output / 255; a sequence model takes `seq`, float32 (N, L, F),
and `seq_len`, int64 (N,). The batch is dynamic, and so is L. The output is `logits` (N, classes).
Everything the rasteriser or the sequence encoder needs is in the metadata (`doodle.config`), so a loader
renders exactly as training did. int8 is onnxruntime's static QDQ quantisation, plus weight-only int8 (standard
ONNX ops) for the recurrent layers it leaves in float.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from collections.abc import Iterator
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
            "export_commit": export_commit, "inputs": INPUT_DOC[lr.input_kind]}
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
    """Nodes kept in float by `quantize_int8`: the first convolution and the final classifier (see README)."""
    import onnx

    nodes = onnx.load_model_from_string(data).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    heads = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]
    return convs[:1] + heads[-1:]


RECURRENT = ("GRU", "LSTM", "RNN")  # ONNX's recurrent ops: inputs 1 W [D, G*H, in], 2 R [D, G*H, H], 3 B [D, 2*G*H]


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


def recurrent_weights(graph) -> dict[str, int]:
    """{initializer name: row length of its 2-D view} for the float W, R, B of the graph's recurrent nodes that
    nothing else reads (no other node, no graph input or output): W and R [D*G*H, in], B [D*2*G, H]."""
    import onnx

    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in all_nodes(graph):
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    out: dict[str, int] = {}
    weight_uses: dict[str, int] = {}
    for node in graph.node:
        if node.op_type not in RECURRENT:
            continue
        hidden = next((a.i for a in node.attribute if a.name == "hidden_size"), 0)
        for k, name in enumerate(node.input[1:4], start=1):
            weight_uses[name] = weight_uses.get(name, 0) + 1
            t = inits.get(name)
            if t is None or t.data_type != onnx.TensorProto.FLOAT or len(t.dims) != (2 if k == 3 else 3):
                continue
            row = hidden if k == 3 else t.dims[2]
            if row > 0 and t.dims[-1] % row == 0 and out.get(name, row) == row:
                out[name] = row
    io = {v.name for v in [*graph.input, *graph.output]}
    return {n: r for n, r in out.items() if weight_uses[n] == uses[n] and n not in io}


def quantize_recurrent(data: bytes) -> tuple[bytes, list[str]]:
    """Weight-only int8 for the GRU / LSTM / RNN nodes, which onnxruntime's static quantiser leaves in float.

    Each of their float weights (`recurrent_weights`: W, R and B) becomes an int8 initializer with one float
    scale per row of its 2-D view (symmetric, zero point 0; a row of W or R is one output unit of one gate, a
    row of B one gate's bias), dequantized in the graph by standard ONNX ops: `DequantizeLinear` (per axis,
    axis 0) and a `Reshape` back to the node's shape. The recurrence itself still runs in float.
    -> (bytes, the names of the rewritten nodes); `data` itself, unchanged, when there is nothing to rewrite
    (an image model's int8 file is what onnxruntime's quantiser wrote).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_model_from_string(data)
    graph = model.graph
    weights = recurrent_weights(graph)
    if not weights:
        return data, []
    dequant, kept = [], []
    for t in graph.initializer:
        if t.name not in weights:
            kept.append(t)
            continue
        w = numpy_helper.to_array(t)
        q, scale = int8_rows(w.reshape(-1, weights[t.name]))
        base = t.name + "_int8"
        kept += [numpy_helper.from_array(q, base), numpy_helper.from_array(scale, base + "_scale"),
                 numpy_helper.from_array(np.array(w.shape, np.int64), base + "_shape")]
        dequant += [helper.make_node("DequantizeLinear", [base, base + "_scale"], [base + "_rows"], axis=0,
                                     name=base + "_DequantizeLinear"),
                    helper.make_node("Reshape", [base + "_rows", base + "_shape"], [base + "_float"],
                                     name=base + "_Reshape")]
    rewritten = []
    for node in graph.node:
        if node.op_type in RECURRENT and any(n in weights for n in node.input[1:4]):
            rewritten.append(node.name)
            for k in range(1, min(4, len(node.input))):
                if node.input[k] in weights:
                    node.input[k] += "_int8_float"
    nodes = dequant + list(graph.node)  # the new nodes read initializers only: first is a topological order
    del graph.initializer[:], graph.node[:]
    graph.initializer.extend(kept)
    graph.node.extend(nodes)
    return model.SerializeToString(), rewritten


def quantize_int8(fp32: bytes, calibration: list[dict[str, np.ndarray]],
                  keep_float: bool = True) -> tuple[bytes, list[str], list[str]]:
    """Static int8 (QDQ, per-channel int8 weights, uint8 activations, min-max calibration on `calibration`),
    then weight-only int8 for recurrent nodes (`quantize_recurrent`) -> (bytes, the names of the nodes left in
    float on purpose: `head_and_stem` when `keep_float`, the names of the recurrent nodes given int8 weights)."""
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
        data, recurrent = quantize_recurrent(out.read_bytes())
        return data, kept, recurrent
