"""``edgemeta web``: the demo server's routes, headers and refusals (no browser needed)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemeta.cli import main
from edgemeta.commands import web_cmd
from edgemeta.runtime.errors import EdgemetaError
from edgemeta.runtime.model import default_model_path

WEB = Path(__file__).resolve().parents[1] / "web"
needs_npm = pytest.mark.skipif(
    not (WEB / "node_modules" / "onnxruntime-web").is_dir(),
    reason="web/node_modules is not installed (cd web && npm ci --ignore-scripts)",
)


@pytest.fixture
def server():
    srv = web_cmd.make_server(default_model_path(), port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def get(port: int, path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", path)  # sent as written: http.client does not normalize '..'
    res = conn.getresponse()
    res.body = res.read()  # type: ignore[attr-defined]
    return res


@needs_npm
def test_serves_page_model_examples_and_runtime_with_isolation_headers(server):
    page = get(server, "/demo/")
    assert page.status == 200 and b"Draw to teach" in page.body
    assert page.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert page.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    assert get(server, "/model.onnx").body == default_model_path().read_bytes()
    js = get(server, "/src/index.js")
    assert js.status == 200 and js.headers["Content-Type"].startswith("text/javascript")
    wasm = get(server, "/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm")
    assert wasm.status == 200 and wasm.headers["Content-Type"] == "application/wasm"
    example = sorted((default_model_path().parent / "examples" / "omniglot").iterdir())[0]
    png = get(server, f"/examples/omniglot/{example.name}/0.png")
    assert png.status == 200 and png.body == (example / "0.png").read_bytes()
    manifest = get(server, "/examples/manifest.json")
    assert manifest.status == 200 and manifest.headers["Content-Type"] == "application/json"
    assert json.loads(manifest.body) == web_cmd.examples_manifest(example.parents[1])


def test_the_shipped_examples_manifest_lists_the_folder_as_it_is():
    """The page's preset comes from models/examples/manifest.json, a plain file any static server
    serves; it must list exactly what the folder holds (rewrite it with write_examples_manifest)."""
    examples = default_model_path().parent / "examples"
    shipped = json.loads((examples / web_cmd.MANIFEST).read_text(encoding="utf-8"))
    assert shipped == web_cmd.examples_manifest(examples), (
        "models/examples/manifest.json is stale: python -c 'from edgemeta.commands.web_cmd import "
        "write_examples_manifest as w; w()'"
    )
    listed = [p for classes in shipped["sets"].values() for c in classes for p in c["images"]]
    assert sorted(listed) == sorted(p.relative_to(examples).as_posix() for p in examples.glob("*/*/*.png"))
    preset = shipped["preset"]
    assert len(shipped["sets"][preset["set"]]) >= 5
    assert all(len(c["images"]) >= preset["shots"] for c in shipped["sets"][preset["set"]])


def test_manifest_orders_images_by_number(tmp_path):
    for name in ("10.png", "2.png", "0.png", "notes.txt"):
        (tmp_path / "set" / "b").mkdir(parents=True, exist_ok=True)
        (tmp_path / "set" / "b" / name).write_bytes(b"")
    (tmp_path / "set" / "a").mkdir()
    path = web_cmd.write_examples_manifest(tmp_path)
    sets = json.loads(path.read_text(encoding="utf-8"))["sets"]
    assert sets == {
        "set": [{"label": "a", "images": []}, {"label": "b", "images": ["set/b/0.png", "set/b/2.png", "set/b/10.png"]}]
    }


@needs_npm
def test_no_way_out_of_the_served_folders(server):
    assert get(server, "/examples/omniglot/../../default.onnx").status == 404
    assert get(server, "/examples/..%2F..%2Fdefault.onnx").status == 404
    assert get(server, "/../pyproject.toml").status == 404


@needs_npm
def test_busy_port_is_one_error_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = CliRunner().invoke(main, ["web", "--port", str(port)])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [f"Error: port {port} is in use: pick another with --port"]


def test_missing_web_folder_or_dependencies(tmp_path, monkeypatch):
    fake = tmp_path / "edgemeta" / "commands" / "web_cmd.py"
    monkeypatch.setattr(web_cmd, "__file__", str(fake))
    with pytest.raises(EdgemetaError, match="the web demo is not in this installation"):
        web_cmd.web_root()
    (tmp_path / "web" / "demo").mkdir(parents=True)
    (tmp_path / "web" / "demo" / "index.html").write_text("<html></html>")
    with pytest.raises(EdgemetaError, match="JavaScript dependencies are missing: run 'npm ci --ignore-scripts'"):
        web_cmd.web_root()


def conditional_get(port: int, path: str, etag: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", path, headers={"If-None-Match": etag, "If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})
    res = conn.getresponse()
    res.body = res.read()  # type: ignore[attr-defined]
    return res


def test_files_carry_an_etag_that_tells_another_model_apart(server, tmp_path):
    first = get(server, "/model.onnx")
    etag = first.headers["ETag"]
    assert etag and first.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    same = conditional_get(server, "/model.onnx", etag)
    assert same.status == 304 and same.body == b"" and same.headers["ETag"] == etag
    assert conditional_get(server, "/model.onnx", '"other"').status == 200  # If-None-Match wins over the date
    # Another model file, even with the same size and modification time, is another entity.
    other = tmp_path / "other.onnx"
    other.write_bytes(default_model_path().read_bytes())
    st = default_model_path().stat()
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert web_cmd.file_etag(str(other)) != web_cmd.file_etag(str(default_model_path()))
    assert web_cmd.file_etag(str(tmp_path / "missing")) is None
