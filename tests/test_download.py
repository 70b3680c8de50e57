"""The downloader, against HTTP servers on 127.0.0.1: verified files only, nothing partial left, mirrors in order."""

import hashlib
import http.server
import io
import socket
import threading
import time
import urllib.request

import pytest

from nets.data import download
from nets.data.download import DownloadError, download_dataset, download_file, file_md5, mirrors_for
from idx_files import serve_directory

PAYLOAD = b"\x1f\x8b pretend this is a gzip IDX file " * 100
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
BUILTIN_MIRRORS = dict(download.MIRRORS)  # before any test swaps them out


def refused_url():
    """A base URL on 127.0.0.1 where nothing listens (the connection is refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def files_in(directory):
    return sorted(path.name for path in directory.iterdir())


@pytest.fixture(autouse=True)
def no_real_mirrors(monkeypatch):
    """No test reaches the internet: the built-in mirrors and $NETS_MIRROR point nowhere."""
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    monkeypatch.setattr(download, "MIRRORS", {"mnist": (refused_url(),), "fashion-mnist": (refused_url(),)})


@pytest.fixture
def good_mirror(tmp_path):
    """A server holding file.gz with PAYLOAD; yields its base URL."""
    root = tmp_path / "good"
    root.mkdir()
    (root / "file.gz").write_bytes(PAYLOAD)
    with serve_directory(root) as url:
        yield url


@pytest.fixture
def corrupt_mirror(tmp_path):
    """A server holding file.gz with one byte changed; yields its base URL."""
    root = tmp_path / "corrupt"
    root.mkdir()
    (root / "file.gz").write_bytes(PAYLOAD[:-1] + b"!")
    with serve_directory(root) as url:
        yield url


@pytest.fixture
def empty_mirror(tmp_path):
    """A server with no files: every request is a 404; yields its base URL."""
    root = tmp_path / "empty"
    root.mkdir()
    with serve_directory(root) as url:
        yield url


@pytest.fixture
def target(tmp_path):
    directory = tmp_path / "target"
    directory.mkdir()
    return directory


def test_success_writes_the_verified_file_and_nothing_else(good_mirror, target):
    path = download_file("file.gz", PAYLOAD_MD5, target, [good_mirror])
    assert path == target / "file.gz"
    assert path.read_bytes() == PAYLOAD
    assert files_in(target) == ["file.gz"]


def test_checksum_mismatch_leaves_nothing_behind(corrupt_mirror, target):
    with pytest.raises(DownloadError) as info:
        download_file("file.gz", PAYLOAD_MD5, target, [corrupt_mirror])
    message = str(info.value)
    assert "could not download file.gz" in message
    assert f"{corrupt_mirror}file.gz: checksum mismatch" in message
    assert f"expected {PAYLOAD_MD5}" in message
    assert "\n" not in message
    assert files_in(target) == []


def test_checksum_mismatch_moves_on_to_the_next_mirror(corrupt_mirror, good_mirror, target):
    path = download_file("file.gz", PAYLOAD_MD5, target, [corrupt_mirror, good_mirror])
    assert path.read_bytes() == PAYLOAD
    assert files_in(target) == ["file.gz"]


def test_404_falls_through_to_the_next_mirror(empty_mirror, good_mirror, target):
    path = download_file("file.gz", PAYLOAD_MD5, target, [empty_mirror, good_mirror])
    assert path.read_bytes() == PAYLOAD


def test_refused_connection_falls_through_to_the_next_mirror(good_mirror, target):
    path = download_file("file.gz", PAYLOAD_MD5, target, [refused_url(), good_mirror])
    assert path.read_bytes() == PAYLOAD


def test_all_mirrors_failing_lists_each(empty_mirror, corrupt_mirror, target):
    refused = refused_url()
    with pytest.raises(DownloadError) as info:
        download_file("file.gz", PAYLOAD_MD5, target, [empty_mirror, refused, corrupt_mirror])
    message = str(info.value)
    assert f"{empty_mirror}file.gz: HTTP 404" in message
    assert f"{refused}file.gz: " in message
    assert f"{corrupt_mirror}file.gz: checksum mismatch" in message
    assert files_in(target) == []


def test_no_mirrors_at_all(target):
    with pytest.raises(DownloadError, match="no mirror"):
        download_file("file.gz", PAYLOAD_MD5, target, [])


class _InterruptingResponse(io.BytesIO):
    """A response that delivers one chunk, then raises `error` (as Ctrl-C would mid-download)."""

    def __init__(self, error):
        super().__init__(PAYLOAD)
        self.error = error
        self.headers = {"Content-Length": str(len(PAYLOAD))}
        self.calls = 0

    def read(self, size=-1):
        self.calls += 1
        if self.calls > 1:
            raise self.error
        return super().read(10)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("boom")], ids=["ctrl-c", "exception"])
def test_interrupted_download_leaves_nothing_behind(monkeypatch, target, error):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _InterruptingResponse(error))
    with pytest.raises(type(error)):
        download_file("file.gz", PAYLOAD_MD5, target, ["http://127.0.0.1:9/"])
    assert files_in(target) == []


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    """Sends headers for 100 bytes, then sends nothing for longer than the test's timeout."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b"x")
        self.wfile.flush()
        time.sleep(1.0)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def stalling_mirror():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StallingHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_timeout_moves_on_to_the_next_mirror(stalling_mirror, good_mirror, target):
    started = time.monotonic()
    path = download_file("file.gz", PAYLOAD_MD5, target, [stalling_mirror, good_mirror], timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert path.read_bytes() == PAYLOAD
    assert files_in(target) == ["file.gz"]


def test_timeout_is_named_when_it_is_the_last_failure(stalling_mirror, target):
    with pytest.raises(DownloadError, match="timed out"):
        download_file("file.gz", PAYLOAD_MD5, target, [stalling_mirror], timeout=0.2)
    assert files_in(target) == []


def test_quiet_when_stderr_is_not_a_terminal(good_mirror, target, capsys):
    download_file("file.gz", PAYLOAD_MD5, target, [good_mirror])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_shown_on_a_terminal(good_mirror, target, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    download_file("file.gz", PAYLOAD_MD5, target, [good_mirror])
    assert "file.gz" in terminal.getvalue()


# --- mirror lists and whole datasets --------------------------------------------------------------


def test_mirrors_for_prefers_argument_then_environment_then_table(monkeypatch):
    monkeypatch.setattr(download, "MIRRORS", {"mnist": ("https://a.example/mnist/", "https://b.example/mnist")})
    assert mirrors_for("mnist") == ["https://a.example/mnist/", "https://b.example/mnist/"]
    monkeypatch.setenv("NETS_MIRROR", "http://one.example/x, http://two.example/y/")
    assert mirrors_for("mnist") == ["http://one.example/x/", "http://two.example/y/"]
    assert mirrors_for("mnist", ["http://arg.example"]) == ["http://arg.example/"]
    assert mirrors_for("mnist", "http://single.example/") == ["http://single.example/"]


def test_builtin_mirrors_and_checksums_are_the_published_ones():
    assert BUILTIN_MIRRORS["mnist"] == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    assert BUILTIN_MIRRORS["fashion-mnist"] == ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    assert download.ARCHIVE_MD5["mnist"]["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert download.ARCHIVE_MD5["fashion-mnist"]["t10k-labels-idx1-ubyte.gz"] == "bb300cfdad3c16e7a12a480ee83cd310"
    standard = sorted(
        f"{split}-{kind}.gz" for split in ("train", "t10k") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    )
    for table in download.ARCHIVE_MD5.values():
        assert sorted(table) == standard


@pytest.fixture
def dataset_mirror(tmp_path):
    """A server with two small files; yields (base URL, {name: MD5})."""
    root = tmp_path / "mirror"
    root.mkdir()
    checksums = {}
    for name in ("a.gz", "b.gz"):
        content = name.encode() * 50
        (root / name).write_bytes(content)
        checksums[name] = hashlib.md5(content).hexdigest()
    with serve_directory(root) as url:
        yield url, checksums


def test_download_dataset_fetches_every_file(dataset_mirror, tmp_path):
    url, checksums = dataset_mirror
    directory = download_dataset("mnist", tmp_path / "data" / "mnist", mirrors=[url], checksums=checksums)
    assert files_in(directory) == ["a.gz", "b.gz"]
    assert all(file_md5(directory / name) == md5 for name, md5 in checksums.items())


def test_download_dataset_uses_the_environment_and_the_checksum_table(dataset_mirror, tmp_path, monkeypatch):
    url, checksums = dataset_mirror
    monkeypatch.setenv("NETS_MIRROR", url)
    monkeypatch.setitem(download.ARCHIVE_MD5, "mnist", checksums)
    directory = download_dataset("mnist", tmp_path / "out")
    assert files_in(directory) == ["a.gz", "b.gz"]


def test_download_dataset_keeps_verified_files_and_replaces_bad_ones(dataset_mirror, tmp_path, monkeypatch):
    url, checksums = dataset_mirror
    directory = tmp_path / "out"
    directory.mkdir()
    (directory / "a.gz").write_bytes(b"a.gz" * 50)  # already good
    (directory / "b.gz").write_bytes(b"stale")
    fetched = []
    real_download_file = download.download_file

    def recording_download_file(name, *args, **kwargs):
        fetched.append(name)
        return real_download_file(name, *args, **kwargs)

    monkeypatch.setattr(download, "download_file", recording_download_file)
    download_dataset("mnist", directory, mirrors=[url], checksums=checksums)
    assert fetched == ["b.gz"]
    assert file_md5(directory / "b.gz") == checksums["b.gz"]


def test_failed_first_download_leaves_no_empty_directories(empty_mirror, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_dataset("mnist", tmp_path / "data" / "mnist", mirrors=[empty_mirror], checksums={"a.gz": "0" * 32})
    assert not (tmp_path / "data").exists()


def test_failed_download_keeps_an_existing_directory(empty_mirror, target):
    with pytest.raises(DownloadError):
        download_dataset("mnist", target, mirrors=[empty_mirror], checksums={"a.gz": "0" * 32})
    assert target.is_dir() and files_in(target) == []
