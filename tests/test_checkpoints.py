"""Checkpoints: atomic under SIGKILL, clear errors on full disks, and hostile / broken / foreign files refused."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from doodle.rundir import CheckpointError, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def good_state(classes=("cat", "dog", "eye"), fill: float = 0.0) -> dict:
    return {"model": {"w": torch.full((4, 4), fill)}, "classes": list(classes), "epoch": 1}


class Payload:
    """Unpickling this runs a shell command: what a hostile checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "classes": ["cat"], "extra": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt refused: it holds objects that are not plain weights"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "corrupt or truncated"),
    (lambda p: p.write_bytes(os.urandom(4096)), "corrupt or truncated"),
    (lambda p: p.write_bytes(b""), "corrupt or truncated"),
    (lambda p: torch.save({"weights": torch.ones(2)}, p), "not a doodle checkpoint"),
    (lambda p: torch.save([1, 2, 3], p), "not a doodle checkpoint"),
    (lambda p: p.unlink(), "not found"),
])
def test_broken_and_foreign_files_name_the_file(tmp_path, make, message):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(good_state(), path)
    make(path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_class_list_mismatch_is_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(good_state(), path)
    assert load_checkpoint(path, ["cat", "dog", "eye"])["epoch"] == 1
    with pytest.raises(CheckpointError, match="trained on other classes"):
        load_checkpoint(path, ["cat", "eye", "dog"])


def test_full_disk_gives_a_clear_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(good_state(fill=1.0), path)
    real_fsync = os.fsync

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*No space left on device"):
        save_checkpoint(good_state(fill=2.0), path)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert load_checkpoint(path)["model"]["w"][0, 0] == 1.0
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


WRITER = textwrap.dedent("""
    import sys, torch
    from doodle.rundir import save_checkpoint
    path, i = sys.argv[1], 0
    while True:  # ~40 MB per write, so a kill lands mid-write often
        i += 1
        save_checkpoint({"model": {"w": torch.full((10_000_000,), float(i))}, "classes": ["a"], "epoch": i}, path)
        print(i, flush=True)
""")


def test_sigkill_during_writes_never_leaves_a_half_written_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for delay in (1.5, 2.1, 2.7, 3.3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if path.exists():
            state = load_checkpoint(path)
            assert torch.all(state["model"]["w"] == float(state["epoch"]))  # one whole version
    assert path.exists()
    save_checkpoint(good_state(), path)  # the next save sweeps temp files of killed writers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
