"""The resolution chain, checksum verification, and downloads from a loopback HTTP server (never the network)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import require_shared_data
from mtlab.data import resolve as resolve_module
from mtlab.data.idx import read_bytes, write_idx
from mtlab.data.resolve import Place, find_at, locate, places, resolve, user_cache_root, verified, verify
from mtlab.data.sources import SOURCES, RawFile, Source
from mtlab.errors import DataError

# ----------------------------------------------------------------------------------- helpers (shared by CLI tests)


def write_toy_files(directory: Path, seed: int = 0) -> dict[str, bytes]:
    """Two small IDX files ``toy-images`` / ``toy-labels`` as .gz in ``directory``; returns decompressed contents."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    write_idx(directory / "toy-images.gz", rng.integers(0, 256, (6, 4, 4), dtype=np.uint8))
    write_idx(directory / "toy-labels.gz", rng.integers(0, 10, 6, dtype=np.uint8))
    return {name: read_bytes(directory / f"{name}.gz") for name in ("toy-images", "toy-labels")}


def toy_source(contents: dict[str, bytes], **changes) -> Source:
    """A source whose catalogue digests are those of ``contents`` (as written by :func:`write_toy_files`)."""
    files = tuple(RawFile(name, hashlib.sha256(content).hexdigest()) for name, content in contents.items())
    source = Source(name="toy", dirname="toy", files=files, hint="get the toy files somewhere")
    return dataclasses.replace(source, **changes)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (an ephemeral port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def bypass_proxies(monkeypatch) -> None:
    """Make sure loopback requests are never sent to a proxy configured in the environment."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def online(monkeypatch):
    """Downloads allowed (from loopback servers only)."""
    monkeypatch.delenv("MTLAB_OFFLINE")
    bypass_proxies(monkeypatch)


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# ------------------------------------------------------------------------------------------------ the chain


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy source's files in four places: data_dir, $MTLAB_DATA, the user cache and a system directory."""
    contents = write_toy_files(tmp_path / "original")
    roots = {"data_dir": tmp_path / "explicit", "env": tmp_path / "env", "cache": user_cache_root()}
    for root in roots.values():
        shutil.copytree(tmp_path / "original", root / "toy")
    system = tmp_path / "system" / "toy-data"
    shutil.copytree(tmp_path / "original", system)
    monkeypatch.setenv("MTLAB_DATA", str(roots["env"]))
    return toy_source(contents, system_dirs=(system,)), roots, system


def test_order_explicit_then_env_then_cache_then_system(toy, monkeypatch):
    source, roots, system = toy
    expected = [
        (roots["data_dir"] / "toy", "data_dir"),
        (roots["env"] / "toy", "$MTLAB_DATA"),
        (roots["cache"] / "toy", "user cache"),
        (system, "system"),
    ]
    for directory, why in expected:
        found = resolve(source, roots["data_dir"])
        assert found.place == Place(directory, why)
        shutil.rmtree(directory)
    with pytest.raises(DataError, match="toy files not found"):
        resolve(source, roots["data_dir"])


def test_places_lists_the_whole_chain(toy):
    source, roots, system = toy
    assert [str(p) for p in places(source, roots["data_dir"])] == [
        f"{roots['data_dir'] / 'toy'} (data_dir)",
        f"{roots['data_dir']} (data_dir)",
        f"{roots['env'] / 'toy'} ($MTLAB_DATA)",
        f"{roots['cache'] / 'toy'} (user cache)",
        f"{system} (system)",
    ]


def test_files_directly_in_the_explicit_dir(tmp_path):
    source = toy_source(write_toy_files(tmp_path / "flat"))
    found = resolve(source, tmp_path / "flat")
    assert found.place == Place(tmp_path / "flat", "data_dir")
    assert found.path("toy-images") == tmp_path / "flat" / "toy-images.gz"


def test_decompressed_files_are_accepted_and_preferred(tmp_path):
    directory = tmp_path / "toy"
    source = toy_source(write_toy_files(directory))
    for name in ("toy-images", "toy-labels"):
        (directory / name).write_bytes(read_bytes(directory / f"{name}.gz"))
    (directory / "toy-labels.gz").unlink()  # one file only decompressed, the other in both forms
    found = resolve(source, tmp_path)
    assert found.path("toy-images") == directory / "toy-images"
    assert found.path("toy-labels") == directory / "toy-labels"


def test_incomplete_place_is_skipped(toy):
    source, roots, _ = toy
    (roots["data_dir"] / "toy" / "toy-labels.gz").unlink()
    assert resolve(source, roots["data_dir"]).place.why == "$MTLAB_DATA"


def test_checksum_mismatch_names_file_expected_and_actual(tmp_path):
    contents = write_toy_files(tmp_path / "toy")
    good = toy_source(contents)
    write_toy_files(tmp_path / "toy", seed=1)  # same names, other bytes
    actual = hashlib.sha256(read_bytes(tmp_path / "toy" / "toy-images.gz")).hexdigest()
    with pytest.raises(DataError) as excinfo:
        resolve(good, tmp_path)
    message = str(excinfo.value)
    assert str(tmp_path / "toy" / "toy-images.gz") in message
    assert good.file("toy-images").digest in message
    assert actual in message
    assert "mtlab data fetch toy" in message


def test_verification_is_cached_per_process(tmp_path, monkeypatch):
    source = toy_source(write_toy_files(tmp_path / "toy"))
    calls = []

    def counting(path, **kwargs):
        calls.append(path)
        return read_bytes(path, **kwargs)

    monkeypatch.setattr(resolve_module, "read_bytes", counting)
    resolve(source, tmp_path)
    resolve(source, tmp_path)
    assert len(calls) == 2  # two files, hashed once each


def test_cache_notices_a_changed_file(tmp_path):
    source = toy_source(write_toy_files(tmp_path / "toy"))
    resolve(source, tmp_path)
    (tmp_path / "toy" / "toy-labels.gz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="truncated or corrupt"):
        resolve(source, tmp_path)


def test_offline_not_found_lists_every_place_on_one_line(toy, tmp_path):
    source, roots, system = toy
    for root in roots.values():
        shutil.rmtree(root / "toy")
    shutil.rmtree(system)
    (roots["env"] / "toy").mkdir()
    write_toy_files(tmp_path / "partial")
    shutil.copy(tmp_path / "partial" / "toy-images.gz", roots["env"] / "toy")
    source = dataclasses.replace(source, mirrors=("http://127.0.0.1:9/",))
    with pytest.raises(DataError) as excinfo:
        resolve(source, roots["data_dir"])
    message = str(excinfo.value)
    assert "\n" not in message
    for place in places(source, roots["data_dir"]):
        assert str(place.directory) in message
    assert "[incomplete: no toy-labels]" in message
    assert "MTLAB_OFFLINE=1" in message
    assert message.endswith(source.hint)


def test_download_false_is_named(tmp_path, online):
    source = toy_source(write_toy_files(tmp_path / "elsewhere"), mirrors=(closed_port_url(),))
    with pytest.raises(DataError, match=r"downloads are off \(download: false\)"):
        resolve(source, tmp_path / "nothing", download=False)


def test_locate_prefers_a_complete_place_over_an_earlier_partial(toy):
    source, roots, _ = toy
    (roots["data_dir"] / "toy" / "toy-images.gz").unlink()
    found = locate(source, roots["data_dir"])
    assert found is not None
    assert found.place.why == "$MTLAB_DATA"


def test_verify_reports_each_file(tmp_path):
    directory = tmp_path / "toy"
    contents = write_toy_files(directory)
    contents["toy-extra"] = b"x"
    source = toy_source(contents)
    found = find_at(source, Place(directory, "test"))
    assert [c.status for c in verify(found)] == ["ok", "ok", "missing"]
    write_toy_files(directory, seed=1)
    (directory / "toy-labels.gz").write_bytes(b"\x1f\x8b broken")
    checks = verify(find_at(source, Place(directory, "test")))
    assert [c.status for c in checks] == ["mismatch", "corrupt", "missing"]
    assert checks[0].path == directory / "toy-images.gz"
    assert "expected" in checks[0].detail
    assert "truncated or corrupt" in checks[1].detail


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_sources_verify(name):
    shared = require_shared_data()
    found = verified(resolve(SOURCES[name]))
    assert found.place == Place(shared / SOURCES[name].dirname, "$MTLAB_DATA")


@pytest.mark.parametrize("name", ["fashion-mnist-sample", "mnist-sample"])
def test_embedded_samples_verify_with_nothing_beside_the_package(name, monkeypatch):
    monkeypatch.delenv("MTLAB_DATA", raising=False)
    found = verified(resolve(SOURCES[name], download=False))
    assert found.place.why == "embedded"
    assert found.complete


def test_fashion_from_a_system_dir(monkeypatch):
    shared = require_shared_data()
    monkeypatch.delenv("MTLAB_DATA")
    source = dataclasses.replace(SOURCES["fashion-mnist"], system_dirs=(shared / "fashion-mnist",))
    assert resolve(source).place == Place(shared / "fashion-mnist", "system")


def test_embedded_sample_is_found_in_the_package(monkeypatch):
    monkeypatch.delenv("MTLAB_DATA", raising=False)
    found = resolve(SOURCES["fashion-mnist-sample"], download=False)
    assert found.place.why == "embedded"
    assert found.place.directory.parts[-2:] == ("embedded", "fashion-mnist-sample")


def test_user_cache_root_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert user_cache_root() == tmp_path / "mtlab"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_cache_root() == tmp_path / "home" / ".cache" / "mtlab"


# -------------------------------------------------------------------------------------------------- downloads


def test_download_into_the_cache_from_the_second_mirror(tmp_path, online):
    served = tmp_path / "served"
    source = toy_source(write_toy_files(served))
    with serve_directory(served) as url:
        source = dataclasses.replace(source, mirrors=(url + "missing/", url))
        found = resolve(source, tmp_path / "nothing", show_progress=False)
    assert found.place == Place(user_cache_root() / "toy", "downloaded")
    assert sorted(p.name for p in (user_cache_root() / "toy").iterdir()) == ["toy-images.gz", "toy-labels.gz"]
    assert resolve(source).place.why == "user cache"  # the server is gone; the cache answers


def test_download_completes_a_partial_cache(tmp_path, online):
    served = tmp_path / "served"
    source = toy_source(write_toy_files(served))
    (user_cache_root() / "toy").mkdir(parents=True)
    shutil.copy(served / "toy-images.gz", user_cache_root() / "toy")
    (served / "toy-images.gz").unlink()  # the server can only provide the missing file
    with serve_directory(served) as url:
        found = resolve(dataclasses.replace(source, mirrors=(url,)), show_progress=False)
    assert found.complete


def test_downloaded_content_with_the_wrong_checksum_is_refused(tmp_path, online):
    served = tmp_path / "served"
    source = toy_source(write_toy_files(tmp_path / "expected"))
    write_toy_files(served, seed=1)
    with serve_directory(served) as url, pytest.raises(DataError) as excinfo:
        resolve(dataclasses.replace(source, mirrors=(url,)), show_progress=False)
    message = str(excinfo.value)
    assert f"{url}toy-images.gz delivered content with sha256" in message
    assert source.file("toy-images").digest in message
    assert message.endswith(source.hint)
    assert list((user_cache_root() / "toy").iterdir()) == []  # nothing half-written left behind


def test_network_error_names_the_url_and_the_manual_way(tmp_path, online):
    source = toy_source(write_toy_files(tmp_path / "x"))
    url = closed_port_url()
    with pytest.raises(DataError) as excinfo:
        resolve(dataclasses.replace(source, mirrors=(url,)), show_progress=False)
    message = str(excinfo.value)
    assert f"could not download toy-images.gz ({url}toy-images.gz: " in message
    assert "refused" in message.lower()
    assert message.endswith(source.hint)
