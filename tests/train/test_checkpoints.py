"""Checkpoints: atomic under SIGKILL, clear errors on full disks, and hostile / broken / foreign files refused."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from doodle.runs.folder import CheckpointError, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]


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
    import os, signal, sys, torch
    from doodle.runs.folder import save_checkpoint
    path, stage = sys.argv[1], sys.argv[2]

    def stop(here):  # tell the test where the save is, then wait for its SIGKILL
        if here == stage:
            print(here, flush=True)
            while True:
                signal.pause()

    class HalfThenStop:  # the temp file's writer: half the bytes reach the disk, then the kill
        def __init__(self, f):
            self.f = f
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.f.__exit__(*exc)
        def __getattr__(self, name):
            return getattr(self.f, name)
        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            stop("mid-write")
            return self.f.write(data[len(data) // 2 :])

    def state(i):
        return {"model": {"w": torch.full((100_000,), float(i))}, "classes": ["a"], "epoch": i}

    save_checkpoint(state(1), path)
    fdopen, fsync, replace = os.fdopen, os.fsync, os.replace
    os.fdopen = lambda fd, mode: HalfThenStop(fdopen(fd, mode))
    os.fsync = lambda fd: (stop("before-fsync"), fsync(fd))
    os.replace = lambda a, b: (stop("before-replace"), replace(a, b), stop("after-replace"))
    save_checkpoint(state(2), path)
    print("done", flush=True)
""")


@pytest.mark.parametrize("stage, version, temp_left", [
    ("mid-write", 1, True), ("before-fsync", 1, True), ("before-replace", 1, True), ("after-replace", 2, False),
])
def test_sigkill_during_a_save_never_leaves_a_half_written_checkpoint(tmp_path, stage, version, temp_left):
    """The writer stops at `stage` of its second save and says so; the kill comes on that line, not after a
    guessed delay, so each stage of atomic_write_bytes is hit on any machine."""
    path = tmp_path / "last.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), stage], env=env, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == stage  # blocks until the writer is there (or has died)
    finally:
        proc.kill()
        proc.wait()
    temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert bool(temps) == temp_left
    state = load_checkpoint(path)
    assert state["epoch"] == version and torch.all(state["model"]["w"] == float(version))  # one whole version
    save_checkpoint(good_state(), path)  # the next save sweeps temp files of killed writers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
