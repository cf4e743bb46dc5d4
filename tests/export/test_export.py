"""Export a tiny trained run as ONNX (fp32, int8) and as a package, through tools/export.py's main; then use
the files wherever a run is used (predict, the page's guesses, the ensemble) and refuse broken or hostile
ones. The run is the page tests' tiny ResNet18 (tests/conftest_app.py); the sequence model is trained here."""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest_app import tiny_run  # noqa: F401  (a fixture)
from helpers import command_module, shrink
from onnx import numpy_helper

from doodle import cli
from doodle.app import guesses
from doodle.drawing.pen import pen_message
from doodle.export.onnx_export import OPSET, int8_weights, weight_only_inputs
from doodle.predict.exported import (
    fold_split,
    is_exported,
    load_exported,
    load_model,
    member_folder,
    ort_session,
    read_onnx_metadata,
    store_logits,
)
from doodle.predict.loaded_run import load_run
from doodle.predict.package import MANIFEST, ExportError, read_package
from doodle.runs.folder import RunDir, load_logits, save_logits
from doodle.train.data import BatchDataset

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "input/sample"
export_tool = command_module(ROOT / "tools/export.py")
predict_tool = command_module(ROOT / "src/predict.py")
LOOSE = ["--min-top1", "0", "--max-map3-drop", "1"]  # a 1-epoch model's int8 is not held to the real figures


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):  # noqa: F811
    """{"run", "fp32", "int8", "package"}: the tiny run and its three exports, with each export's report."""
    out = tmp_path_factory.mktemp("exports")
    run = tiny_run[1] / "tiny" / "fold0"
    files = {"run": run, "fp32": out / "tiny.onnx", "int8": out / "tiny_int8.onnx", "package": out / "tiny.doodle"}
    reports = {}
    for key, extra in (("fp32", []), ("int8", ["--int8", *LOOSE]), ("package", ["--format", "package"])):
        reports[key] = export_json(["--run", str(run), "--out", str(files[key]), *extra])
    return files, reports


def export_json(argv: list[str]) -> dict:
    buf = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(buf):
        assert export_tool.main(argv) == 0
    return json.loads(buf.getvalue().splitlines()[-1])


def meta(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_fp32_onnx_matches_the_run_and_carries_what_a_loader_needs(exported):
    files, reports = exported
    parity = reports["fp32"]["fp32_vs_torch"]
    assert parity["max_abs_diff"] <= 1e-3 and parity["top3_identical"] == 1.0 and parity["drawings"] > 20
    m = meta(files["fp32"])
    lr = load_run(files["run"])
    assert json.loads(m["doodle.classes"]) == lr.classes and m["doodle.precision"] == "fp32"
    assert json.loads(m["doodle.config"]) == lr.cfg.to_dict()
    assert json.loads(m["doodle.raster"])["size"] == 32 and m["doodle.input_kind"] == "image"
    assert json.loads(m["doodle.metrics"])["val/map3"] == json.loads(lr.run.summary.read_text())["val/map3"]
    assert m["doodle.commit"] == lr.facts["commit"]
    assert json.loads(m["doodle.checks"])["fp32_vs_torch"] == reports["fp32"]["fp32_vs_torch"]
    assert not list(files["fp32"].parent.glob(".*.tmp"))  # written by rename, nothing left behind


def stored_int8(m: onnx.ModelProto, node: onnx.NodeProto, k: int = 1) -> tuple[onnx.TensorProto, int, int]:
    """(the int8 initializer input k of `node` is rebuilt from, its number of scales, the axis they run along):
    int8 -> Cast to float -> Mul by the scales ([n, 1] along rows, [1, n] along columns) -> maybe Reshape."""
    inits = {t.name: t for t in m.graph.initializer}
    made_by = {out: n for n in m.graph.node for out in n.output}
    assert node.input[k] not in inits  # no float weight left
    mul = made_by[node.input[k]]
    if mul.op_type == "Reshape":
        mul = made_by[mul.input[0]]
    cast = made_by[mul.input[0]]
    assert mul.op_type == "Mul" and cast.op_type == "Cast"
    q, scale = inits[cast.input[0]], inits[mul.input[1]]
    assert q.data_type == onnx.TensorProto.INT8 and scale.data_type == onnx.TensorProto.FLOAT
    assert len(scale.dims) == 2 and min(scale.dims) == 1
    return q, max(scale.dims), 0 if scale.dims[1] == 1 else 1


def test_int8_is_small_checked_and_stores_head_and_stem_weights_as_int8(exported):
    files, reports = exported
    r = reports["int8"]["int8_vs_fp32"]
    # conv1 and fc compute in float, their weights stored int8: the file is 25.27% of fp32 (25.43% with them float)
    assert files["int8"].stat().st_size <= 0.2535 * files["fp32"].stat().st_size
    assert r["float_nodes"] == ["/conv1/Conv", "/fc/Gemm"] and r["tta"] == load_run(files["run"]).cfg.val.tta
    assert r["int8_weight_only_nodes"] == ["/conv1/Conv", "/fc/Gemm"]
    m = onnx.load(str(files["int8"]))
    nodes = {n.name: n for n in m.graph.node}
    q, units, axis = stored_int8(m, nodes["/conv1/Conv"])  # per output channel, on [out, in * kh * kw]
    assert list(q.dims) == [64, 3 * 7 * 7] and (units, axis) == (64, 0)
    classes = len(load_run(files["run"]).classes)
    q, units, axis = stored_int8(m, nodes["/fc/Gemm"])  # transB = 1: B is [classes, 512], a row per class
    assert list(q.dims) == [classes, 512] and (units, axis) == (classes, 0)
    assert nodes["/fc/Gemm"].output[0] == "logits"  # the logits come out of the float Gemm, not quantised
    assert not [t.name for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) > 1
                and not t.name.endswith("_scale")]  # no float weight left, biases (1-D) stay float
    assert {"fp32_val/map3", "int8_val/map3", "top1_agreement"} <= set(r)
    assert meta(files["int8"])["doodle.precision"] == "int8"
    lr = load_exported(files["int8"])
    assert isinstance(lr.model, torch.nn.Module) and lr.classes == load_run(files["run"]).classes


def test_predict_ranks_the_sample_alike_from_run_onnx_and_package(exported, tmp_path):
    files, _ = exported
    csv = {}
    for key in ("run", "fp32", "package"):
        csv[key] = tmp_path / f"{key}.csv"
        assert predict_tool.main(["--run", str(files[key]), "--test", str(SAMPLE / "test_simplified.csv"),
                                  "--out", str(csv[key]), "--device", "cpu", "--batch-size", "64"]) == 0
    assert csv["package"].read_bytes() == csv["run"].read_bytes()  # the package round-trips exactly
    assert csv["fp32"].read_text() == csv["run"].read_text()  # same top-3 for all 270 drawings
    run_logits = load_logits(files["run"] / "test_logits.npz")["logits"]
    onnx_out = RunDir(files["fp32"].parent / "tiny-onnx" / "fold0")
    np.testing.assert_allclose(load_logits(onnx_out.test_logits)["logits"], run_logits, atol=2e-3)


def test_failed_parity_writes_nothing(tiny_run, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "never.onnx"
    argv = ["--run", str(tiny_run[1] / "tiny" / "fold0"), "--out", str(out), "--max-diff", "0"]
    assert cli.run(export_tool.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(out) in err and "not written" in err and "\n" not in err
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def seq_run(kaggle_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seq_outputs")
    train = command_module(ROOT / "src/train.py").main
    assert train(["--cfg", str(ROOT / "configs/seq_gru.yaml"), "--out", str(out), "--no-progress", "--device", "cpu",
                  *shrink(kaggle_store, 1, "model.kwargs={conv: 16, hidden: 96, layers: 2, dropout: 0.0}",
                          "seq.max_points=40")]) == 0
    return out / "seq_gru" / "fold0"


def test_sequence_model_exports_with_dynamic_batch_and_length(seq_run, tmp_path):
    out = tmp_path / "seq.onnx"
    report = export_json(["--run", str(seq_run), "--out", str(out)])
    assert report["fp32_vs_torch"]["max_abs_diff"] <= 1e-3
    lr, ort = load_run(seq_run), load_exported(out)
    assert ort.input_kind == "sequence" and json.loads(meta(out)["doodle.sequence"])["max_points"] == 40
    store, split = fold_split(lr.cfg, 0)
    rows = split.val_idx[:30]
    lengths = BatchDataset(store, split, lr.cfg, "sequence")[rows.tolist()]["seq_len"].numpy()
    assert len(set(lengths.tolist())) > 5 and lengths.max() > 12  # lengths other than the traced 12
    for batch in (1, 7):  # batches padded to other lengths than the traced 12, alone and side by side
        np.testing.assert_allclose(store_logits(ort, store, split, rows, batch_size=batch),
                                   store_logits(lr, store, split, rows, batch_size=batch), atol=1e-4)


def test_sequence_int8_has_int8_gru_stem_and_head_weights_is_small_and_agrees_with_fp32(seq_run, tmp_path):
    fp32, int8 = tmp_path / "seq.onnx", tmp_path / "seq_int8.onnx"
    export_json(["--run", str(seq_run), "--out", str(fp32)])
    report = export_json(["--run", str(seq_run), "--out", str(int8), "--int8", *LOOSE])["int8_vs_fp32"]
    m32, m8 = onnx.load(str(fp32)), onnx.load(str(int8))
    grus = [n for n in m8.graph.node if n.op_type == "GRU"]
    nodes = {n.name: n for n in m8.graph.node}
    stem, head = report["float_nodes"]  # the first convolution and the classifier compute in float
    assert nodes[stem].op_type == "Conv" and nodes[head].op_type == "Gemm" and len(grus) == 4  # 2 layers x 2 ways
    assert report["int8_weight_only_nodes"] == [n.name for n in m8.graph.node if n.name in {stem, head}
                                                or n.op_type == "GRU"]
    for gru in grus:  # W, R and B: int8 initializers -> Cast, Mul (a scale per row) -> Reshape -> the GRU
        for k in (1, 2, 3):
            q, units, axis = stored_int8(m8, gru, k)
            assert axis == 0 and q.dims[0] == units
    q, units, axis = stored_int8(m8, nodes[stem])  # Conv1d weight [16, features, k]: per output channel
    assert q.dims[0] == units == 16 and axis == 0
    classes = len(load_run(seq_run).classes)
    q, units, axis = stored_int8(m8, nodes[head])  # Gemm, transB = 1, B [classes, 4 x hidden]: a row per class
    assert list(q.dims) == [classes, 4 * 96] and (units, axis) == (classes, 0)

    def weight_bytes(m: onnx.ModelProto) -> int:
        return sum(numpy_helper.to_array(t).nbytes for t in m.graph.initializer)

    # the GRUs are most of the weights (hidden 96): with them in float the int8 weights are 99% of fp32's; with the
    # stem's first convolution and the head float 29% (the file 35%); all stored int8 26% (the file 32%)
    assert weight_bytes(m8) <= 0.27 * weight_bytes(m32) and int8.stat().st_size <= 0.335 * fp32.stat().st_size
    lr32, lr8 = load_exported(fp32), load_exported(int8)
    store, split = fold_split(lr8.cfg, 0)
    a = store_logits(lr32, store, split, split.val_idx)
    b1, b7 = (store_logits(lr8, store, split, split.val_idx, batch_size=n) for n in (1, 7))
    np.testing.assert_allclose(b7, b1, atol=1e-5)  # any batch, padded to any length: the same logits
    assert len(a) > 50 and (a.argmax(1) == b1.argmax(1)).mean() >= 0.95  # a 1-epoch model: near-tied logits


class Recurrent(torch.nn.Module):
    """A bidirectional LSTM (one ONNX node for both directions: D = 2), a GRU and an RNN."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(6, 32, bidirectional=True, batch_first=True)
        self.gru = torch.nn.GRU(64, 32, batch_first=True)
        self.rnn = torch.nn.RNN(32, 16, batch_first=True)

    def forward(self, x):
        return self.rnn(self.gru(self.lstm(x)[0])[0])[0]


def test_recurrent_weights_of_any_kind_become_int8_and_other_graphs_stay_as_they_are(exported):
    torch.manual_seed(0)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's deprecation and RNN batch-size notices
        warnings.simplefilter("ignore")
        torch.onnx.export(Recurrent().eval(), torch.rand(2, 5, 6), buf, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n", 1: "length"}}, opset_version=OPSET)
    fp32 = buf.getvalue()
    data, nodes = int8_weights(fp32, weight_only_inputs(fp32))
    assert nodes == ["/lstm/LSTM", "/gru/GRU", "/rnn/RNN"] and len(data) < 0.4 * len(fp32)
    m = onnx.load_model_from_string(data)
    onnx.checker.check_model(m, full_check=True)
    assert {t.data_type for t in m.graph.initializer if t.name.endswith("_int8")} == {onnx.TensorProto.INT8}
    assert not [t.name for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
                and not t.name.endswith("_scale")]
    x = np.random.default_rng(0).random((3, 9, 6), dtype=np.float32)  # other batch and length than traced
    a, b = (ort_session(d, "recurrent").run(None, {"x": x})[0] for d in (fp32, data))
    np.testing.assert_allclose(b, a, atol=0.01)
    int8_image = exported[0]["int8"].read_bytes()
    assert weight_only_inputs(int8_image) == []  # nothing recurrent, no node named
    assert int8_weights(int8_image, weight_only_inputs(int8_image))[0] is int8_image  # the very bytes given


def test_conv_gemm_and_matmul_weights_become_int8_per_output_unit(tmp_path):
    """Conv [out, in, kh, kw] per output channel, Gemm's B per row with transB = 1 and per column without,
    MatMul's [in, out] per column; the output units' scales differ by 1000x, so a scale per input unit (the
    wrong axis) would drown the small ones."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)

    def spread(shape, axis):  # output unit j scaled by 10 ** (j / (n - 1) * 3 - 1.5)
        n = shape[axis]
        scale = 10.0 ** (np.arange(n) / (n - 1) * 3 - 1.5)
        return (rng.standard_normal(shape) * np.expand_dims(scale, [a for a in range(len(shape)) if a != axis]))

    w = {"conv_w": spread((4, 2, 3, 3), 0), "conv_b": rng.standard_normal(4), "g0_b": spread((36, 7), 1),
         "g0_c": rng.standard_normal(7), "g1_b": spread((5, 7), 0), "mm_w": spread((5, 3), 1)}
    nodes = [helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], name="conv"),
             helper.make_node("Flatten", ["c"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "g0_b", "g0_c"], ["g0"], name="gemm_n", transB=0),
             helper.make_node("Gemm", ["g0", "g1_b"], ["g1"], name="gemm_t", transB=1),
             helper.make_node("MatMul", ["g1", "mm_w"], ["y"], name="matmul")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", d])
               for n, d in (("f", 36), ("g0", 7), ("g1", 5), ("y", 3))]  # every layer's output, to compare
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 5, 5])],
                              outputs, [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    fp32 = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]).SerializeToString()
    names = ["conv", "gemm_n", "gemm_t", "matmul"]
    assert weight_only_inputs(fp32, names) == [(n, 1) for n in names]
    data, rewritten = int8_weights(fp32, weight_only_inputs(fp32, names))
    assert rewritten == names
    m = onnx.load_model_from_string(data)
    onnx.checker.check_model(m, full_check=True)
    nodes8 = {n.name: n for n in m.graph.node}
    units = {"conv": ([4, 18], 0), "gemm_n": ([36, 7], 1), "gemm_t": ([5, 7], 0), "matmul": ([5, 3], 1)}
    for name, (dims, axis) in units.items():
        q, n, a = stored_int8(m, nodes8[name])
        assert list(q.dims) == dims and (n, a) == (dims[axis], axis)
    floats = {t.name for t in m.graph.initializer if t.data_type == TensorProto.FLOAT and not t.name.endswith("_scale")}
    assert floats == {"conv_b", "g0_c"}  # biases stay float
    import onnxruntime as ort

    opts = ort.SessionOptions()  # onnxruntime folds Cast and Mul into float weights as it loads the model
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    assert not [n.name for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node if "_int8" in n.name]
    x = rng.random((6, 2, 5, 5), dtype=np.float32)
    fp32_out, int8_out = (ort_session(d, key).run(None, {"x": x}) for key, d in (("fp32", fp32), ("int8", data)))
    for a, b in zip(fp32_out, int8_out, strict=True):  # every layer's output units, each within 5% of its own scale
        assert np.all(np.abs(b - a).max(0) <= 0.05 * np.abs(a).max(0))


def test_page_guesses_from_an_export(exported):
    files, _ = exported
    found = guesses.find_runs(files["fp32"].parent)
    assert {files["fp32"], files["int8"], files["package"]} <= set(found)
    message = pen_message([[[10, 200, 200, 10, 10], [10, 10, 200, 200, 10], [0, 40, 80, 120, 160]]])
    run = load_run(files["run"])
    a_run = guesses.analyse(message, [run])
    assert json.loads(read_onnx_metadata(files["fp32"])[1]["temperature"]) == pytest.approx(run.temperature)
    for key in ("fp32", "package"):
        model = load_model(files[key])
        assert model.temperature == pytest.approx(run.temperature) and run.temperature != 1.0  # calibration travels
        a = guesses.analyse(message, [model])
        assert a.status == "ok" and [w for w, _ in a.top(3)] == [w for w, _ in a_run.top(3)]


def test_ensemble_takes_an_export_as_a_member_and_refuses_other_classes(exported, tmp_path, capsys):
    files, _ = exported
    ens_tool = command_module(ROOT / "tools/ensemble.py")
    out = tmp_path / "blend.csv"
    assert ens_tool.main([str(files["run"]), str(files["package"]), "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    a, b = (m["val/map3"] for m in report["members"])
    assert a == pytest.approx(b, abs=1e-6)  # the package predicts its validation fold as the run did
    other = tmp_path / "other" / "fold0"
    v = load_logits(files["run"] / "val_logits.npz")
    save_logits(other / "val_logits.npz", v["logits"], v["key_id"], v["classes"][::-1], v["target"])
    assert cli.run(ens_tool.main, [str(files["fp32"]), str(other.parent), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: member") and "class order" in err


# ---- broken and hostile files --------------------------------------------------------------------------

class Plant:
    """Unpickling this creates the file `path`: the payload a pickle-based loader would run."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_truncated_foreign_and_altered_files_are_refused_by_name(exported, tmp_path):
    files, _ = exported
    fp32, pkg = files["fp32"].read_bytes(), files["package"].read_bytes()
    cases = {"half.onnx": fp32[: len(fp32) // 2], "half.doodle": pkg[: len(pkg) // 2], "text.onnx": b"hello",
             "empty.doodle": b""}
    foreign = onnx.load_model_from_string(fp32)
    del foreign.metadata_props[:]
    cases["foreign.onnx"] = foreign.SerializeToString()
    altered = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(pkg)) as src, zipfile.ZipFile(altered, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data.replace(b"fold", b"FOLD") if name == "config.json" else data)
    cases["altered.doodle"] = altered.getvalue()
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ExportError, match=str(tmp_path / name).replace(".", r"\.")):
            load_model(tmp_path / name)
    assert is_exported(tmp_path / "half.onnx") and not is_exported(files["run"])


def test_loading_never_unpickles(exported, tmp_path):
    files, _ = exported
    planted = tmp_path / "planted"
    payload = pickle.dumps(Plant(planted))
    (tmp_path / "pickle.onnx").write_bytes(payload)
    torch_style = io.BytesIO()  # what torch.save writes: a zip holding data.pkl
    with zipfile.ZipFile(torch_style, "w") as z:
        z.writestr("archive/data.pkl", payload)
    (tmp_path / "torch.doodle").write_bytes(torch_style.getvalue())
    # a package whose weights entry is the pickle, with checksums that match it
    with zipfile.ZipFile(files["package"]) as z:
        blobs = {n: z.read(n) for n in z.namelist()}
    blobs["weights.safetensors"] = payload
    manifest = json.loads(blobs[MANIFEST])
    import hashlib

    manifest["sha256"]["weights.safetensors"] = hashlib.sha256(payload).hexdigest()
    blobs[MANIFEST] = json.dumps(manifest).encode()
    hostile = io.BytesIO()
    with zipfile.ZipFile(hostile, "w") as z:
        for n, d in blobs.items():
            z.writestr(n, d)
    (tmp_path / "hostile.doodle").write_bytes(hostile.getvalue())
    for name in ("pickle.onnx", "torch.doodle", "hostile.doodle"):
        with pytest.raises(ExportError, match=name):
            load_model(tmp_path / name)
    with pytest.raises(ExportError, match="weights.safetensors is unreadable"):
        read_package(tmp_path / "hostile.doodle")
    assert not planted.exists()
    pickle.loads(payload)  # the payload is live: unpickled, it does plant the file
    assert planted.exists()


def test_member_folder_of_a_run_is_the_run(exported):
    files, _ = exported
    assert member_folder(files["run"]) == files["run"]
