"""``edgemeta web``: serve the draw-to-teach browser demo (the JavaScript runtime in ``web/``).

Standard library only. Every response carries the cross-origin isolation headers (COOP/COEP) that
onnxruntime-web needs for WASM threads. Routes: ``/`` the ``web/`` folder (the page is
``/demo/``), ``/model.onnx`` the chosen model, ``/examples/...`` the shipped example images and
their ``manifest.json`` (``examples_manifest``), which the page reads its preset from: a file, so
any static server can serve it too. ``/demo/sw.js`` (the page's offline cache) may take the whole
folder as its scope (``Service-Worker-Allowed``). Files carry an ETag of their identity (inode,
size, modification time), which the offline cache revalidates with: Last-Modified alone cannot
tell apart two files checked out in the same second, such as another ``--model``.
"""

from __future__ import annotations

import errno
import functools
import http.server
import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

import click

from .options import model_option

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
SERVICE_WORKER = "/demo/sw.js"  # the demo's offline cache (web/demo/sw.js)
TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".onnx": "application/octet-stream",
    ".npz": "application/octet-stream",
}


def web_root() -> Path:
    """The ``web/`` folder of a source checkout (it is not in the wheel); EdgemetaError when absent
    or when its JavaScript dependencies are not installed."""
    from edgemeta.runtime.errors import EdgemetaError

    root = Path(__file__).resolve().parents[2] / "web"
    if not (root / "demo" / "index.html").is_file():
        raise EdgemetaError(
            f"the web demo is not in this installation (no {root / 'demo' / 'index.html'}): "
            "run edgemeta web from a git clone of edgemeta"
        )
    if not (root / "node_modules" / "onnxruntime-web").is_dir():
        raise EdgemetaError(
            f"the web demo's JavaScript dependencies are missing: run 'npm ci --ignore-scripts' in {root}"
        )
    return root


class DemoHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with isolation headers; the model and the examples under fixed names."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def __init__(self, *args: Any, model: Path, examples: Path, **kwargs: Any) -> None:
        self.model, self.examples = model, examples
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        if clean == "/model.onnx":
            return str(self.model)
        if clean.startswith("/examples/"):
            parts = [p for p in urllib.parse.unquote(clean[len("/examples/") :]).split("/") if p]
            if any(p in (".", "..") or "\\" in p for p in parts):
                return str(self.examples / "missing")  # no way out of the examples folder
            return str(self.examples.joinpath(*parts))
        return super().translate_path(path)

    def send_head(self) -> Any:
        self.etag = file_etag(self.translate_path(self.path))
        if self.etag and self.etag in self.headers.get("If-None-Match", ""):
            self.send_response(http.HTTPStatus.NOT_MODIFIED)
            self.end_headers()
            return None
        return super().send_head()  # If-Modified-Since is ignored when If-None-Match is sent

    def end_headers(self) -> None:
        if getattr(self, "etag", None):
            self.send_header("ETag", self.etag)
        for key, value in ISOLATION_HEADERS.items():
            self.send_header(key, value)
        if self.path.split("?", 1)[0] == SERVICE_WORKER:
            # The demo's worker takes the whole folder: onnxruntime-web's thread workers start from
            # node_modules/, and a worker script is only served from the cache within the scope.
            self.send_header("Service-Worker-Allowed", "/")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the parent's name)
        click.echo(f"{self.address_string()} {format % args}", err=True)


def file_etag(path: str) -> str | None:
    """A strong validator for the file at ``path`` (a folder: its ``index.html``; None for anything
    else): another file, or this one rewritten, gets another."""
    if os.path.isdir(path):
        path = os.path.join(path, "index.html")
    if not os.path.isfile(path):
        return None
    st = os.stat(path)
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def make_server(model: Path, host: str = "127.0.0.1", port: int = 8000) -> http.server.ThreadingHTTPServer:
    """A server for the demo (not yet serving); port 0 picks a free port."""
    from edgemeta.runtime.errors import EdgemetaError

    root = web_root()
    examples = model_examples()
    handler = functools.partial(DemoHandler, directory=str(root), model=model, examples=examples)
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise EdgemetaError(f"port {port} is in use: pick another with --port") from None
        raise


def model_examples() -> Path:
    from edgemeta.runtime.model import default_model_path

    return default_model_path().parent / "examples"


MANIFEST = "manifest.json"
# What the page's "Load shipped examples" enrolls: the first ``shots`` images of each class of ``set``.
PRESET = {"set": "omniglot", "shots": 5}


def examples_manifest(examples: Path) -> dict[str, Any]:
    """The manifest of an examples folder (``SET/CLASS/N.png``): ``{"version": 1, "preset": PRESET,
    "sets": {set: [{"label": class, "images": [path relative to the folder, ...]}, ...]}}``, classes
    by name and images by number."""

    def number(f: Path) -> tuple[int, str]:
        return (int(f.stem) if f.stem.isdigit() else -1, f.name)

    sets: dict[str, list[dict[str, Any]]] = {}
    for folder in sorted(p for p in examples.iterdir() if p.is_dir()):
        sets[folder.name] = [
            {
                "label": c.name,
                "images": [f"{folder.name}/{c.name}/{f.name}" for f in sorted(c.glob("*.png"), key=number)],
            }
            for c in sorted(p for p in folder.iterdir() if p.is_dir())
        ]
    return {"version": 1, "preset": PRESET, "sets": sets}


def write_examples_manifest(examples: Path | None = None) -> Path:
    """Write ``manifest.json`` into the examples folder (default: the shipped one); its path."""
    folder = model_examples() if examples is None else examples
    path = folder / MANIFEST
    path.write_text(json.dumps(examples_manifest(folder), indent=1) + "\n", encoding="utf-8")
    return path


@click.command("web")
@model_option()
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port (0: any free port)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
def web(model_path: Path | None, port: int, host: str) -> None:
    """Serve the draw-to-teach browser demo and print its URL (Ctrl-C stops it)."""
    from .options import load_model

    model = load_model(model_path)  # refuses a file that is not an edgemeta model before serving it
    server = make_server(model.path, host, port)
    click.echo(f"http://{host}:{server.server_address[1]}/demo/")
    click.echo(f"Serving {model.path.name}; Ctrl-C stops.", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
