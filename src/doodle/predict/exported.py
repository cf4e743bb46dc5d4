"""Load an exported model (`.onnx` or `.doodle` package) as a `LoadedRun`, without its run folder.

Predict, the ensemble and the page take an export wherever they take a run: the resolved config travels
inside the file, so the drawings are rendered by the one rasteriser (or encoded as sequences) exactly as
training did. An ONNX model runs through onnxruntime behind a small `nn.Module` (`OrtModule`), so the
prediction loops stay the ones `train.engine` has. Neither format is ever unpickled: ONNX is protobuf,
a package is a zip of JSON and safetensors (`predict.package`).

What predict writes for an export (test logits, rejects) goes to the export's own output folder,
`<dir>/<stem>-<onnx|doodle>/fold<k>/`, next to the file (`output_dir`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from doodle.config import Config as ConfigType
from doodle.config import ConfigError, from_dict
from doodle.models.factory import build_model, input_kind_of
from doodle.predict.loaded_run import LoadedRun, inference_layout, load_run, temperature_of
from doodle.predict.package import ExportError, read_package
from doodle.render.raster import raster_spec
from doodle.runs.folder import RunDir, save_logits
from doodle.store.format import Store
from doodle.train.data import Split, eval_loaders, fixed_batches, make_split
from doodle.train.engine import evaluate, resolve_precision

ONNX_FORMAT = "doodle-onnx/1"
SUFFIXES = (".onnx", ".doodle")
META = "doodle."  # prefix of our keys in the ONNX metadata_props
INPUT_NAMES = {"image": ("image",), "sequence": ("seq", "seq_len")}


def is_exported(path: str | Path) -> bool:
    """A path that names an exported model file (by suffix; a folder never is one)."""
    return Path(path).suffix in SUFFIXES and not Path(path).is_dir()


def output_dir(path: str | Path, fold: int) -> RunDir:
    """Where predict writes for an exported file: `<dir>/<stem>-<kind>/fold<k>/` (a run-like fold folder)."""
    path = Path(path)
    return RunDir(path.parent / f"{path.stem}-{path.suffix.lstrip('.')}" / f"fold{fold}")


class OrtModule(nn.Module):
    """An onnxruntime session behind the `nn.Module` call the engine makes: model(x) or model(seq, seq_len)."""

    def __init__(self, session, input_names: tuple[str, ...]):
        super().__init__()
        self.session, self.input_names = session, input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        feeds = {n: x.detach().cpu().numpy() for n, x in zip(self.input_names, inputs, strict=True)}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def ort_session(data: bytes, name: str, threads: int | None = None):
    """An onnxruntime CPU session for ONNX bytes; ExportError naming the file when onnxruntime refuses it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types for any bad graph
        raise ExportError(f"{name}: onnxruntime cannot load it ({str(e).splitlines()[0][:120]})") from None


def read_onnx_metadata(path: Path) -> tuple[bytes, dict[str, str]]:
    """The file's bytes and its doodle metadata (keys without the prefix); refuses foreign or broken files."""
    import onnx
    from google.protobuf.message import DecodeError

    data = Path(path).read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ExportError(f"{path}: truncated or not an ONNX model ({type(e).__name__})") from None
    meta = {p.key.removeprefix(META): p.value for p in model.metadata_props if p.key.startswith(META)}
    if meta.get("format") != ONNX_FORMAT:
        raise ExportError(f"{path}: not a doodle ONNX export (no {META}format={ONNX_FORMAT} metadata; "
                          "truncated, or exported by something else)")
    return data, meta


def _config(config: dict, name: str) -> ConfigType:
    try:
        cfg = from_dict(ConfigType, config)
    except (ConfigError, TypeError) as e:
        raise ExportError(f"{name}: its config is not one this code reads ({e})") from None
    cfg.model.pretrained, cfg.model.weights = False, ""  # the file has the weights
    return cfg


def _loaded(path: Path, cfg: ConfigType, facts: dict, classes: list[str], model: nn.Module,
            metrics: dict, channels_last: bool = False) -> LoadedRun:
    cpu = torch.device("cpu")
    metrics = metrics if isinstance(metrics, dict) else {}
    acc = metrics.get("per_class_acc")
    acc = None if acc is None else np.asarray(acc, np.float32)
    return LoadedRun(output_dir(path, int(facts.get("fold", 0))), cfg, facts, classes, model.eval(), cpu,
                     resolve_precision("off", cpu), acc, temperature_of(metrics.get("val/temperature")), channels_last)


def load_onnx(path: str | Path) -> LoadedRun:
    """A doodle `.onnx` -> LoadedRun on the CPU (onnxruntime), with the config and classes from its metadata."""
    path = Path(path)
    data, meta = read_onnx_metadata(path)
    try:
        config, facts, classes = (json.loads(meta[k]) for k in ("config", "run", "classes"))
    except (KeyError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: doodle metadata incomplete ({e})") from None
    cfg = _config(config, str(path))
    kind = input_kind_of(cfg)
    session = ort_session(data, str(path))
    names = tuple(i.name for i in session.get_inputs())
    if names != INPUT_NAMES[kind]:
        raise ExportError(f"{path}: inputs {names}, a {kind} model takes {INPUT_NAMES[kind]}")
    out = session.get_outputs()[0].shape
    if len(out) != 2 or out[1] != len(classes):
        raise ExportError(f"{path}: outputs {out} do not match its {len(classes)} classes")
    try:
        metrics = json.loads(meta.get("metrics", "{}"))
    except json.JSONDecodeError:
        raise ExportError(f"{path}: doodle metadata 'metrics' is not JSON") from None
    return _loaded(path, cfg, facts, classes, OrtModule(session, names), metrics)


def load_package(path: str | Path) -> LoadedRun:
    """A `.doodle` package -> LoadedRun (torch, CPU): the model built from its config, weights from safetensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model package {path} not found")
    pkg = read_package(path)
    cfg = _config(pkg.config, str(path))
    model = build_model(cfg, len(pkg.classes), raster_spec(cfg).channels)
    try:
        model.load_state_dict(pkg.state_dict)
    except RuntimeError as e:
        raise ExportError(f"{path}: weights do not fit model {cfg.model.name} "
                          f"({str(e).splitlines()[0][:120]})") from None
    channels_last = inference_layout(model, torch.device("cpu"), input_kind_of(cfg))  # as load_run: the same logits
    return _loaded(path, cfg, pkg.facts, pkg.classes, model, pkg.metrics, channels_last)


def load_exported(path: str | Path) -> LoadedRun:
    """An exported file by its suffix: `.onnx` (onnxruntime) or `.doodle` (torch)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model {path} not found")
    return load_onnx(path) if path.suffix == ".onnx" else load_package(path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """A run / fold folder (`load_run`) or an exported file (`load_exported`, always on the CPU)."""
    return load_exported(path) if is_exported(path) else load_run(path, device)


# ---- an export's drawings from the run's store: parity checks, int8 calibration, ensemble members --------

def fold_split(cfg: ConfigType, fold: int, store: str | Path | None = None) -> tuple[Store, Split]:
    """The run's store (or `store`) and its fold split, exactly as training made it."""
    path = Path(store or cfg.data.store)
    if not (path / "store.json").is_file():
        raise FileNotFoundError(f"store {path} not found: the run's validation drawings are needed "
                                "(give the store's path with --store)")
    st = Store(path)
    return st, make_split(st, cfg, fold)


def store_logits(lr: LoadedRun, store: Store, split: Split, idx: np.ndarray, tta: str = "none",
                 batch_size: int = 256) -> np.ndarray:
    """Logits (N, C) of the drawings `idx` of the store, rendered as the run renders them (`tta`: none | flip)."""
    loaders = eval_loaders(store, split, lr.cfg, lr.input_kind, fixed_batches(np.asarray(idx), batch_size), 0, tta)
    return evaluate(lr.model, loaders, lr.device, lr.precision, lr.channels_last, progress=False)["logits"]


def member_folder(path: str | Path, store: str | Path | None = None) -> Path:
    """An ensemble member for an exported file: its output folder, holding `fold<k>/val_logits.npz` (the
    validation fold predicted by the export itself, with the run's TTA; made once, again when the file is
    newer) and the `test_logits.npz` predict wrote there. A run folder is returned as it is."""
    if not is_exported(path):
        return Path(path)
    lr = load_exported(path)
    out = lr.run
    if not out.val_logits.is_file() or out.val_logits.stat().st_mtime < Path(path).stat().st_mtime:
        st, split = fold_split(lr.cfg, int(lr.facts.get("fold", 0)), store)
        logits = store_logits(lr, st, split, split.val_idx, lr.cfg.val.tta)
        out.root.mkdir(parents=True, exist_ok=True)
        save_logits(out.val_logits, logits, np.asarray(st.key_id[split.val_idx]), lr.classes,
                    split.targets(st, split.val_idx))
    return out.root.parent
