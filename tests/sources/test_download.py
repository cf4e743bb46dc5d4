"""Downloads against a local HTTP server with Range support (never the real network), Kaggle via a fake API."""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest.mock import create_autospec
from urllib.parse import unquote

import pytest
from helpers import command_module

from doodle import cli, resources
from doodle.sources import google as download
from doodle.sources import kaggle_api

ROOT = Path(__file__).resolve().parents[2]
DATA = b"".join(b'{"word":"cat","key_id":"%d","drawing":[[[0,1],[2,3]]]}\n' % i for i in range(200))


tool = command_module(ROOT / "tools" / "download.py")


class RangeHandler(BaseHTTPRequestHandler):
    """Serves `files` (URL path -> bytes); honours `Range: bytes=N-`; records every request."""

    files: dict[str, bytes] = {}
    seen: list[tuple[str, str, str | None]] = []
    truncate = False  # send half the body, then close (a dropped connection)
    lie_total = 0  # added to the total announced in Content-Range
    ignore_range = False  # answer 200 with the whole file, as servers without Range support do

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        rng = self.headers.get("Range")
        self.seen.append((self.command, unquote(self.path), rng))
        rng = None if self.ignore_range else rng
        data = self.files.get(unquote(self.path))
        if data is None:
            self.send_error(404)
            return
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        if start >= len(data) and rng:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        chunk = data[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Accept-Ranges", "bytes")
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data) + self.lie_total}")
        self.end_headers()
        if body:
            self.wfile.write(chunk[: len(chunk) // 2] if self.truncate else chunk)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """(base URL, handler class) of a fresh local server; proxies bypassed for 127.0.0.1."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    handler = type("Handler", (RangeHandler,), {"files": {}, "seen": [], "truncate": False, "lie_total": 0,
                                                "ignore_range": False})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_full_download(server, tmp_path):
    base, h = server
    h.files["/simplified/cat.ndjson"] = DATA
    dest = tmp_path / "cat.ndjson"
    assert download.download_file(f"{base}/simplified/cat.ndjson", dest, progress=False) == "downloaded"
    assert dest.read_bytes() == DATA
    assert not dest.with_name("cat.ndjson.part").exists()


def test_resume_from_part(server, tmp_path):
    base, h = server
    h.files["/raw/cat.ndjson"] = DATA
    dest = tmp_path / "cat.ndjson"
    (tmp_path / "cat.ndjson.part").write_bytes(DATA[: len(DATA) // 2])
    assert download.download_file(f"{base}/raw/cat.ndjson", dest, progress=False) == "resumed"
    assert ("GET", "/raw/cat.ndjson", f"bytes={len(DATA) // 2}-") in h.seen
    assert dest.read_bytes() == DATA


def test_server_without_range_support_starts_over(server, tmp_path):
    base, h = server
    h.files["/raw/cat.ndjson"] = DATA
    h.ignore_range = True
    (tmp_path / "cat.ndjson.part").write_bytes(b"stale bytes")
    download.download_file(f"{base}/raw/cat.ndjson", tmp_path / "cat.ndjson", progress=False)
    assert (tmp_path / "cat.ndjson").read_bytes() == DATA


def test_part_already_whole_is_finished(server, tmp_path):
    base, h = server
    h.files["/raw/cat.ndjson"] = DATA
    (tmp_path / "cat.ndjson.part").write_bytes(DATA)
    download.download_file(f"{base}/raw/cat.ndjson", tmp_path / "cat.ndjson", progress=False)
    assert (tmp_path / "cat.ndjson").read_bytes() == DATA


def test_dropped_connection_then_resume(server, tmp_path):
    base, h = server
    h.files["/raw/cat.ndjson"] = DATA
    h.truncate = True
    dest = tmp_path / "cat.ndjson"
    with pytest.raises(download.DownloadError, match=r"cat\.ndjson: got \d+ bytes, server announced"):
        download.download_file(f"{base}/raw/cat.ndjson", dest, progress=False)
    assert not dest.exists() and 0 < (tmp_path / "cat.ndjson.part").stat().st_size < len(DATA)
    h.truncate = False
    assert download.download_file(f"{base}/raw/cat.ndjson", dest, progress=False) == "resumed"
    assert dest.read_bytes() == DATA


def test_size_mismatch_is_an_error_naming_the_file(server, tmp_path):
    base, h = server
    h.files["/raw/cat.ndjson"] = DATA
    h.lie_total = 10  # Content-Range announces more than the server ever sends
    (tmp_path / "cat.ndjson.part").write_bytes(DATA[:100])
    with pytest.raises(download.DownloadError, match=r"cat\.ndjson: got \d+ bytes, server announced \d+"):
        download.download_file(f"{base}/raw/cat.ndjson", tmp_path / "cat.ndjson", progress=False)
    assert not (tmp_path / "cat.ndjson").exists()


def test_present_file_with_other_size_is_an_error(server, tmp_path):
    base, h = server
    h.files["/raw/cat.ndjson"] = DATA
    (tmp_path / "cat.ndjson").write_bytes(DATA[:-1])
    with pytest.raises(download.DownloadError, match=r"cat\.ndjson: \d+ bytes but the server has \d+"):
        download.download_file(f"{base}/raw/cat.ndjson", tmp_path / "cat.ndjson", progress=False)


def test_complete_file_is_skipped_after_head(server, tmp_path):
    base, h = server
    h.files["/raw/cat.ndjson"] = DATA
    (tmp_path / "cat.ndjson").write_bytes(DATA)
    assert download.download_file(f"{base}/raw/cat.ndjson", tmp_path / "cat.ndjson", progress=False) == "skipped"
    assert [m for m, _, _ in h.seen] == ["HEAD"]


def test_complete_file_is_skipped_offline(closed_port, tmp_path):
    (tmp_path / "cat.ndjson").write_bytes(DATA)
    url = f"http://127.0.0.1:{closed_port}/raw/cat.ndjson"
    assert download.download_file(url, tmp_path / "cat.ndjson", progress=False) == "skipped"


def test_missing_remote_file_is_a_404_error(server, tmp_path):
    base, _ = server
    with pytest.raises(download.DownloadError, match="HTTP 404"):
        download.download_file(f"{base}/raw/nope.ndjson", tmp_path / "nope.ndjson", progress=False)


def test_google_urls_quote_spaces():
    urls = download.google_urls(["The Eiffel Tower", "cat"], "simplified", "http://h/full/")
    assert urls == {"The Eiffel Tower": "http://h/full/simplified/The%20Eiffel%20Tower.ndjson",
                    "cat": "http://h/full/simplified/cat.ndjson"}
    with pytest.raises(ValueError, match="format 'svg'"):
        download.google_urls(["cat"], "svg")


def test_check_classes():
    known = ["cat", "dog", "The Eiffel Tower"]
    assert resources.check_classes(["the eiffel tower", "Cat"], known) == ["The Eiffel Tower", "cat"]
    with pytest.raises(ValueError, match=r"'catt' \(nearest: cat"):
        resources.check_classes(["catt"], known)
    with pytest.raises(ValueError, match="given more than once: 'cat'"):
        resources.check_classes(["cat", "dog", "Cat"], known)


def test_google_cli_parallel_with_resume(server, tmp_path, capsys):
    base, h = server
    h.files["/simplified/The Eiffel Tower.ndjson"] = DATA
    h.files["/simplified/cat.ndjson"] = DATA[:300]
    h.files["/simplified/dog.ndjson"] = DATA[:500]
    out = tmp_path / "google" / "simplified"
    out.mkdir(parents=True)
    (out / "cat.ndjson").write_bytes(DATA[:300])
    (out / "dog.ndjson.part").write_bytes(DATA[:200])
    argv = ["google", "--classes", "The Eiffel Tower,cat,dog", "--dest", str(tmp_path / "google"),
            "--base-url", base, "--workers", "3", "--no-progress"]
    assert cli.run(tool.main, argv) == 0
    assert '"downloaded": 1, "resumed": 1, "skipped": 1' in capsys.readouterr().out
    assert (out / "The Eiffel Tower.ndjson").read_bytes() == DATA
    assert (out / "dog.ndjson").read_bytes() == DATA[:500]


def test_google_cli_unknown_class(tmp_path, capsys):
    argv = ["google", "--classes", "cat,elephent", "--dest", str(tmp_path), "--base-url", "http://127.0.0.1:9"]
    assert cli.run(tool.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown class name(s): 'elephent' (nearest: elephant")
    assert "\n" not in err


def test_google_cli_connection_refused(closed_port, tmp_path, capsys):
    argv = ["google", "--classes", "cat", "--dest", str(tmp_path), "--no-progress",
            "--base-url", f"http://127.0.0.1:{closed_port}"]
    assert cli.run(tool.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: 1 of 1 file(s) failed; first: cannot reach 127.0.0.1:")
    assert "check the network connection" in err


def _no_kaggle_credentials(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle_config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def test_kaggle_cli_without_credentials(monkeypatch, tmp_path, capsys):
    _no_kaggle_credentials(monkeypatch, tmp_path)
    assert cli.run(tool.main, ["kaggle", "--dest", str(tmp_path / "input")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: no Kaggle credentials")
    for needed in (str(tmp_path / "kaggle_config"), "KAGGLE_USERNAME", "KAGGLE_KEY", "rules", "input/sample"):
        assert needed in err


def test_kaggle_credentials_found(monkeypatch, tmp_path):
    _no_kaggle_credentials(monkeypatch, tmp_path)
    (tmp_path / "kaggle_config").mkdir()
    (tmp_path / "kaggle_config" / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    assert kaggle_api.ensure_kaggle_credentials().endswith("kaggle.json")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    assert kaggle_api.ensure_kaggle_credentials() == "KAGGLE_USERNAME/KAGGLE_KEY"


@pytest.fixture(scope="module")
def kaggle_api_class(tmp_path_factory):
    """The real KaggleApi class, to autospec the fakes from. Importing any part of the kaggle package runs
    its __init__, which authenticates (reads credentials, prints help, creates its config folder): so the
    import sees an empty HOME and no credential variables, and its output is swallowed."""
    home = tmp_path_factory.mktemp("kaggle_import_home")
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        mp.setenv("HOME", str(home))
        mp.setenv("KAGGLE_CONFIG_DIR", str(home / "kaggle"))
        for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
            mp.delenv(var, raising=False)
        from kaggle.api.kaggle_api_extended import KaggleApi
    return KaggleApi


def fake_kaggle_api(kaggle_api_class, error: Exception | None = None):
    """The real KaggleApi's signatures (autospec: a call the real API would refuse raises TypeError) with a
    download that writes what Kaggle's server would: a real zip for the train folder, plain CSVs otherwise.
    `api.downloaded` lists the files asked for."""
    api = create_autospec(kaggle_api_class, instance=True)
    api.downloaded = []

    def download(competition, file_name, path=None, force=False, quiet=False, unzip=False):
        api.downloaded.append(file_name)
        if error is not None:
            raise error
        if file_name.endswith(".zip"):
            with zipfile.ZipFile(Path(path) / file_name, "w") as z:
                for word in ("cat", "The Eiffel Tower"):
                    z.writestr(f"{word}.csv", "countrycode,drawing,key_id,recognized,timestamp,word\n")
        else:
            (Path(path) / file_name).write_text("key_id,word\n")

    api.competition_download_file.side_effect = download
    return api


def test_the_fake_kaggle_api_refuses_calls_the_real_one_would(kaggle_api_class):
    api = fake_kaggle_api(kaggle_api_class)
    with pytest.raises(TypeError):
        api.competition_download_file(kaggle_api.COMPETITION, "test_simplified.csv", destination="input")
    with pytest.raises(TypeError):
        api.competition_submit("sub.csv", "message", kaggle_api.COMPETITION, "extra positional", True, True)
    with pytest.raises(AttributeError):
        api.competition_upload("sub.csv")
    assert api.downloaded == []


def test_kaggle_download_unzips_and_skips_present(tmp_path, kaggle_api_class):
    api = fake_kaggle_api(kaggle_api_class)
    (tmp_path / "sample_submission.csv").write_text("key_id,word\n")
    out = kaggle_api.download_kaggle(tmp_path, api=api)
    assert out == {"train_simplified.zip": "downloaded", "test_simplified.csv": "downloaded",
                   "sample_submission.csv": "skipped"}
    assert sorted(p.name for p in (tmp_path / "train_simplified").iterdir()) == ["The Eiffel Tower.csv", "cat.csv"]
    assert not (tmp_path / "train_simplified.zip").exists()
    assert kaggle_api.download_kaggle(tmp_path, api=api) == dict.fromkeys(kaggle_api.KAGGLE_FILES, "skipped")
    assert api.downloaded == ["train_simplified.zip", "test_simplified.csv"]


def test_kaggle_network_and_rules_errors(tmp_path, kaggle_api_class):
    import requests  # a dependency of kaggle, so always there

    api = fake_kaggle_api(kaggle_api_class, requests.ConnectionError("Max retries exceeded"))
    with pytest.raises(download.DownloadError, match="cannot reach the Kaggle API; check the network"):
        kaggle_api.download_kaggle(tmp_path, files=["test_simplified.csv"], api=api)
    response = requests.Response()
    response.status_code = 403
    api = fake_kaggle_api(kaggle_api_class, requests.HTTPError("403", response=response))
    with pytest.raises(download.DownloadError, match="HTTP 403; accept the rules"):
        kaggle_api.download_kaggle(tmp_path, files=["test_simplified.csv"], api=api)


# ---------------------------------------------------------------- tools/submit.py -> doodle.sources.kaggle_api


@pytest.fixture
def submission(tmp_path) -> list[str]:
    """submit.py's arguments for a valid submission CSV against a two-drawing test CSV."""
    test = tmp_path / "test_simplified.csv"
    test.write_text('key_id,countrycode,drawing\n1,US,"[]"\n2,DE,"[]"\n')
    sub = tmp_path / "sub.csv"
    sub.write_text("key_id,word\n1,The_Eiffel_Tower cat dog\n2,cat dog fish\n")
    return [str(sub), "-m", "r18 fold 0", "--test", str(test)]


@pytest.fixture
def kaggle_api_mock(monkeypatch, kaggle_api_class):
    """The KaggleApi class that make_kaggle_api imports, replaced by its autospec (by module object: the
    name kaggle.api is the package's KaggleApi instance, not the subpackage)."""
    api_class = create_autospec(kaggle_api_class)
    monkeypatch.setattr(sys.modules[kaggle_api_class.__module__], "KaggleApi", api_class)
    return api_class


def test_submit_sends_the_file_with_competition_and_message(monkeypatch, tmp_path, submission, kaggle_api_mock,
                                                            capsys):
    _no_kaggle_credentials(monkeypatch, tmp_path)
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    api = kaggle_api_mock.return_value
    api.competition_submit.return_value = "Successfully submitted to Quick, Draw! Doodle Recognition Challenge"
    assert cli.run(command_module(ROOT / "tools" / "submit.py").main, submission) == 0
    api.authenticate.assert_called_once_with()
    api.competition_submit.assert_called_once_with(file_name=submission[0], message="r18 fold 0",
                                                   competition="quickdraw-doodle-recognition")
    assert "Successfully submitted" in capsys.readouterr().out


@pytest.mark.parametrize("case, message", [
    ("no credentials", "error: no Kaggle credentials: put kaggle.json"),
    ("rejected", "error: Kaggle rejected the credentials (authenticate)"),
    ("server error", "error: Kaggle refused or failed the submission: ConnectionError: Max retries exceeded"),
])
def test_submit_errors_are_one_line(monkeypatch, tmp_path, submission, kaggle_api_mock, capsys, case, message):
    import requests

    _no_kaggle_credentials(monkeypatch, tmp_path)
    if case != "no credentials":
        monkeypatch.setenv("KAGGLE_USERNAME", "u")
        monkeypatch.setenv("KAGGLE_KEY", "k")
    api = kaggle_api_mock.return_value
    if case == "rejected":
        api.authenticate.side_effect = SystemExit(1)  # what kaggle's authenticate() does
    api.competition_submit.side_effect = requests.ConnectionError("Max retries exceeded")
    assert cli.run(command_module(ROOT / "tools" / "submit.py").main, submission) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(message) and "Traceback" not in err
    assert kaggle_api_mock.called == (case != "no credentials")
    assert api.competition_submit.called == (case == "server error")


# ---- an exported model by URL or path, checksum verified (tools/download.py model) -----------------------

MODEL = bytes(range(256)) * 400  # stands in for a .doodle file: only its bytes and checksum matter here
MODEL_SHA = __import__("hashlib").sha256(MODEL).hexdigest()


def fetch(argv: list[str], capsys) -> tuple[int, str]:
    rc = cli.run(tool.main, ["model", *argv, "--no-progress"])
    out = capsys.readouterr()
    return rc, (out.out if rc == 0 else out.err).strip()


def test_model_download_verifies_and_resumes(server, tmp_path, capsys):
    base, h = server
    h.files["/m/tiny.doodle"] = MODEL
    h.truncate = True  # the connection drops half-way: nothing under the final name
    rc, err = fetch([f"{base}/m/tiny.doodle", "--sha256", MODEL_SHA, "--dest", str(tmp_path)], capsys)
    assert rc == 2 and err.startswith("error: ") and "run again to resume" in err
    assert not (tmp_path / "tiny.doodle").exists() and (tmp_path / "tiny.doodle.unverified.part").exists()
    h.truncate = False
    rc, out = fetch([f"{base}/m/tiny.doodle", "--sha256", MODEL_SHA.upper(), "--dest", str(tmp_path)], capsys)
    assert rc == 0 and '"outcome": "resumed"' in out
    assert (tmp_path / "tiny.doodle").read_bytes() == MODEL and sorted(p.name for p in tmp_path.iterdir()) == [
        "tiny.doodle"]
    assert h.seen[-1][2] is not None  # the second GET asked for the rest (Range), not the whole file
    rc, out = fetch([f"{base}/m/tiny.doodle", "--sha256", MODEL_SHA, "--dest", str(tmp_path)], capsys)
    assert rc == 0 and '"outcome": "skipped"' in out


def test_model_checksum_mismatch_is_refused_and_deleted(server, tmp_path, capsys):
    base, h = server
    h.files["/m/tiny.onnx"] = MODEL[:-1] + b"x"
    rc, err = fetch([f"{base}/m/tiny.onnx", "--sha256", MODEL_SHA, "--dest", str(tmp_path)], capsys)
    assert rc == 2 and err.startswith(f"error: {tmp_path / 'tiny.onnx'}: sha256 ") and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_model_from_a_path_offline_and_bad_arguments(closed_port, tmp_path, capsys):
    src = tmp_path / "src" / "tiny.doodle"
    src.parent.mkdir()
    src.write_bytes(MODEL)
    rc, out = fetch([str(src), "--sha256", MODEL_SHA, "--dest", str(tmp_path / "got")], capsys)
    assert rc == 0 and (tmp_path / "got/tiny.doodle").read_bytes() == MODEL
    rc, err = fetch([f"http://127.0.0.1:{closed_port}/tiny.doodle", "--sha256", MODEL_SHA, "--dest",
                     str(tmp_path / "off")], capsys)
    assert rc == 2 and err.startswith("error: cannot reach 127.0.0.1:") and "\n" not in err
    assert not (tmp_path / "off" / "tiny.doodle").exists()
    for argv, msg in ((["x.doodle", "--sha256", "abc"], "64 hex digits"),
                      (["weights.pt", "--sha256", MODEL_SHA], "not an exported model's name")):
        rc, err = fetch([*argv, "--dest", str(tmp_path)], capsys)
        assert rc == 2 and msg in err
