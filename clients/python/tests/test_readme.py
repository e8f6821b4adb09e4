"""The README's first example, the upload endpoint, run end to end against the real server.

Flask is not a dependency of the suite, so a small stand-in `flask` module serves the
example's routes over HTTP with the standard library: the README's code runs as written.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
import threading
import time
import types
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from panda_client import NotFound

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def first_python_block() -> str:
    return re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)


class _Upload:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def save(self, path: str) -> None:
        pathlib.Path(path).write_bytes(self.data)


def stand_in_flask() -> types.ModuleType:
    """What the example uses of Flask: `Flask(...).post(path)`, `request.files[name].save`,
    and a view returning `(dict, status)`. An upload is the raw request body."""
    flask = types.ModuleType("flask")
    flask.request = types.SimpleNamespace(files={})

    class Flask:
        def __init__(self, name: str) -> None:
            self.routes = {}

        def post(self, path: str):
            def register(view):
                self.routes[("POST", path)] = view
                return view

            return register

        def serve(self) -> ThreadingHTTPServer:
            routes = self.routes

            class Handler(BaseHTTPRequestHandler):
                def do_POST(self) -> None:
                    view = routes.get(("POST", self.path))
                    if view is None:
                        self.send_error(404)
                        return
                    body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                    flask.request.files = {"video": _Upload(body)}
                    answer, status = view()
                    data = json.dumps(answer).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

                def log_message(self, *args) -> None:
                    pass

            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            return server

    flask.Flask = Flask
    return flask


def test_the_upload_endpoint_answers_202_at_once_and_the_job_transcodes_the_file(
    client, make_job, test_dir, monkeypatch
):
    uploads = test_dir / "uploads"
    uploads.mkdir(exist_ok=True)
    try:
        client.delete_job("transcode-video")  # left by an interrupted run
    except NotFound:
        pass
    # The "transcoder": takes 3 s, then records the video id and the file's size.
    job = make_job(
        "sleep 3; "
        'id=$(printf %s "$PANDA_PAYLOAD" | sed \'s/.*"video_id":"\\([0-9a-f]*\\)".*/\\1/\'); '
        'echo "$id $(wc -c < "$UPLOAD_DIR/$id")" >> "$OUT"',
        name="transcode-video",
        env={"UPLOAD_DIR": str(uploads)},
    )
    monkeypatch.setenv("UPLOAD_DIR", str(uploads))
    monkeypatch.setitem(sys.modules, "flask", stand_in_flask())
    app_module = types.ModuleType("app")
    exec(compile(first_python_block(), "README.md (app.py)", "exec"), app_module.__dict__)
    server = app_module.app.serve()
    try:
        video = b"\x00\x01 not really a video " * 1000
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.server_address[1]}/videos", data=video, method="POST"
        )
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer = response.status, json.loads(response.read())
        answered_in = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()

    assert status == 202
    assert answered_in < 2.5, "the endpoint waited for the job"
    assert job.lines() == []  # not transcoded yet: the job runs after the answer
    assert (uploads / answer["video_id"]).read_bytes() == video
    done = client.wait(answer["execution_id"], timeout=60)
    assert done.status == "succeeded"
    assert done.payload == {"video_id": answer["video_id"]}
    assert done.idempotency_key == f"transcode-{answer['video_id']}"
    assert job.lines() == [f"{answer['video_id']} {len(video)}"]
