"""The framework's ceiling, served with the service's own gunicorn.conf.py beside it: a
bare Flask app answering a small JSON body (run.py), and a bare relay of the model
server's stream as server-sent events, with no authentication or database (streams.py
--baseline).
"""

import json
import os

import urllib3
from flask import Flask, Response, jsonify

app = Flask(__name__)
# One pool per worker, as the service has, sized for a worker's connections.
model = urllib3.PoolManager(maxsize=1000)


@app.get("/")
def hello():
    return jsonify(status="ok", service="baseline")


@app.post("/api/florent/conversations/<conversation_id>/messages")
def relay(conversation_id: str):
    upstream = model.request(
        "POST",
        os.environ["FLORENT_LLM_BASE_URL"] + "/chat/completions",
        body=json.dumps({"model": "m", "stream": True, "messages": []}),
        headers={"Content-Type": "application/json"},
        preload_content=False,
    )

    def events():
        yield b"event: message\ndata: {}\n\n"
        try:
            for line in upstream.stream(None):
                for data in line.split(b"\n"):
                    if not data.startswith(b"data: {"):
                        continue
                    delta = json.loads(data[6:])["choices"][0]["delta"]
                    if "content" in delta:
                        text = json.dumps({"text": delta["content"]})
                        yield b"event: delta\ndata: " + text.encode() + b"\n\n"
            yield b"event: done\ndata: {}\n\n"
        finally:
            upstream.release_conn()

    return Response(events(), 201, mimetype="text/event-stream")
