"""`tools/bench.py load` at smoke size (not timed: speed belongs in the benchmark): users saving through two page
servers on one folder lose nothing, as websocket-protocol clients and as browser contexts; a server killed with
SIGKILL during saves leaves files that `prepare` reads, torn lines counted as rejects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from doodle.store import collected as coll

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.slow]


def needs_browser() -> None:
    if os.environ.get("DOODLE_SKIP_BROWSER") == "1":
        pytest.skip("DOODLE_SKIP_BROWSER=1: browser tests skipped on request")
    if not CHROMIUM.exists():
        pytest.fail(f"Debian's Chromium is not installed at {CHROMIUM} (run `make chromium`)", pytrace=False)


def bench_load(tmp_path: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "load", *args,
                          "--collected", str(tmp_path / "c")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    row = json.loads(res.stdout.strip().splitlines()[-1])
    assert row["bench"] == "load"
    return row


@pytest.mark.parametrize("client", ["protocol", pytest.param("browser", marks=pytest.mark.browser)])
def test_two_servers_two_users_lose_nothing(tmp_path, client):
    if client == "browser":
        needs_browser()
    row = bench_load(tmp_path, "--client", client, "--servers", "2", "--users", "2", "--saves", "2")
    assert (row["client"], row["servers"], row["users"], row["saves"]) == (client, 2, 2, 2)
    assert (row["saved"], row["intact_lines"], row["distinct_key_ids"], row["errors"]) == (4, 4, 4, 0)
    assert row["users_complete"] == 2 and row["updates"] >= 4 and row["ms_p95"] > 0 and row["save_ms_p95"] > 0
    assert row["server_ms_p95"] > 0 and row["cpu_s_server"] > 0
    assert (row["cpu_s_chromium"] > 0) == (client == "browser")
    items, problems = coll.read_drawings(tmp_path / "c")
    assert not problems and sorted(it.author for it in items) == ["user00", "user00", "user01", "user01"]
    # each saved drawing is the two strokes its user drew
    assert [it.drawing().n_strokes for it in items] == [2, 2, 2, 2]


def test_a_killed_server_leaves_files_prepare_reads(tmp_path):
    row = bench_load(tmp_path, "--kills", "1", "--users", "1", "--saves", "3")
    assert row["kills"] == 1 and row["errors"] == 0
    prep = row["prepare"]
    assert prep["rows"] == row["intact_lines"] + row["broken_lines"] and prep["kept"] == row["intact_lines"]
    assert prep["rejected"] == row["broken_lines"] and row["intact_lines"] >= row["saved"] >= 3
