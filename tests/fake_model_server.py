"""An OpenAI-compatible model server on loopback, for the tests of Florent's replies.

It speaks the real protocol over real HTTP/1.1 (`POST /v1/chat/completions`, chunked
server-sent events of `chat.completion.chunk` objects, `data: [DONE]`), so Florent's
client, parser and timeouts all run. Each event is written in two pieces, so lines
(and UTF-8 characters) arrive split across reads, as they do from real servers.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMPLETIONS_PATH = "/v1/chat/completions"
# Longest a stalled stream waits to be released, so no server thread outlives a test.
STALL_LIMIT_S = 15.0


class FakeModelServer:
    """Streams `reply` piece by piece, in chunks (or, told `chunked = False`, in a body that
    ends when the connection closes). Told to, it waits `delay` before each piece,
    stalls after `stall_after` pieces (until `release` is set), drops the connection
    after `drop_after` pieces, ends the body cleanly without finishing after
    `end_after` pieces, sends an error event after `error_after` pieces, answers
    `status` with an error body, or answers one whole JSON completion (with
    `completion_padding` bytes of an extra field, if told). Told
    `head_delay`, it waits that long before it answers at all; `body_delay`, between its
    head and its body; `linger_after_done`, between [DONE] and the body's end, silent, or
    `chatter_after_done`, sending a comment every 0.2 s. Told
    `drop_reused`, it closes a connection without a word when a second request comes on it;
    `endless`, it sends those bytes over and over after its first event, never ending
    (in one chunk as long as a gigabyte when the body is chunked);
    `die_after`, every connection, that long after a request, without a word."""

    def __init__(self, port: int = 0) -> None:
        self.release = threading.Event()
        self.reset()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle(self) -> None:
                # Florent hangs up between requests: it stops reading at [DONE].
                with contextlib.suppress(ConnectionError):
                    super().handle()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                self.served = getattr(self, "served", 0) + 1
                if outer.drop_reused and self.served > 1:
                    # As a server whose keep-alive timeout ran out as the request came.
                    self.close_connection = True
                    outer.dropped += 1
                    return
                if outer.die_after is not None:
                    # As a server that took the request, then died: no answer, later.
                    outer.dropped += 1
                    outer.release.wait(outer.die_after)
                    self.close_connection = True
                    return
                with outer.lock:
                    outer.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                            "client": self.client_address,
                        }
                    )
                    outer.received.set()
                if self.path != COMPLETIONS_PATH:
                    self._json(404, {"error": {"message": "unknown path"}})
                elif outer.status != 200:
                    self._json(outer.status, {"error": {"message": "the model is on fire"}})
                elif outer.whole_completion:
                    whole = completion("".join(outer.reply), body["model"])
                    if outer.completion_padding:
                        whole["padding"] = "x" * outer.completion_padding
                    self._json(200, whole)
                else:
                    if outer.head_delay:
                        outer.release.wait(outer.head_delay)
                    try:
                        self._stream(body["model"])
                    except (BrokenPipeError, ConnectionResetError):
                        outer.hung_up.set()  # Florent closed the request mid-stream

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _stream(self, model: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                if outer.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.flush()
                if outer.body_delay:
                    outer.release.wait(outer.body_delay)
                self._event(chunk(model, {"role": "assistant", "content": ""}))
                if outer.endless is not None:  # until Florent hangs up
                    if outer.chunked:  # in one chunk that says it is 1 GiB long
                        self.wfile.write(b"40000000\r\n")
                    while True:
                        self.wfile.write(outer.endless * 4096)
                for index, piece in enumerate(outer.reply):
                    if index == outer.drop_after:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if index == outer.end_after:
                        self._write_chunk(b"")  # a clean end of body, but no finish, no [DONE]
                        return
                    if index == outer.error_after:
                        self._event({"error": {"message": "overloaded", "type": "server_error"}})
                        self._write_chunk(b"")
                        return
                    if index == outer.stall_after:
                        outer.release.wait(STALL_LIMIT_S)
                    if outer.delay:
                        time.sleep(outer.delay)
                    self._event(chunk(model, {"content": piece}))
                self._event(chunk(model, {}, finish_reason="stop"))
                self._event("[DONE]")
                if outer.linger_after_done:
                    outer.release.wait(outer.linger_after_done)
                chatter_until = time.monotonic() + outer.chatter_after_done
                while time.monotonic() < chatter_until and not outer.release.is_set():
                    self._write_chunk(b": still here\n\n")
                    self.wfile.flush()
                    time.sleep(0.2)
                self._write_chunk(b"")

            def _event(self, data: dict[str, Any] | str) -> None:
                text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
                raw = f"data: {text}\n\n".encode()
                middle = len(raw) // 2
                self._write_chunk(raw[:middle])
                self._write_chunk(raw[middle:])

            def _write_chunk(self, raw: bytes) -> None:
                if outer.chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
                else:  # the body ends when the handler returns and the connection closes
                    self.wfile.write(raw)
                    self.wfile.flush()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reset(self) -> None:
        """Back to a prompt, healthy server with a fresh record."""
        self.release.set()  # frees any stream still stalled by the previous test
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.received = threading.Event()
        self.hung_up = threading.Event()
        self.reply: list[str] = ["Hello", ", I am ", "Florent", "."]
        self.delay = 0.0
        self.head_delay = 0.0
        self.linger_after_done = 0.0
        self.chatter_after_done = 0.0
        self.body_delay = 0.0
        self.drop_reused = False
        self.die_after: float | None = None
        self.dropped = 0
        self.stall_after: int | None = None
        self.drop_after: int | None = None
        self.end_after: int | None = None
        self.error_after: int | None = None
        self.status = 200
        self.whole_completion = False
        self.completion_padding = 0
        self.endless: bytes | None = None
        self.chunked = True

    @property
    def last_messages(self) -> list[dict[str, str]]:
        return self.requests[-1]["body"]["messages"]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def completion(text: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }


def main() -> None:
    """Serve streamed replies on loopback, for trying Florent without a model:

    python -m tests.fake_model_server --port 8001
    FLORENT_LLM_BASE_URL=http://127.0.0.1:8001/v1 make run
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each piece")
    parser.add_argument(
        "--reply", default="Hello! I am a fake model, streaming this reply word by word."
    )
    args = parser.parse_args()
    server = FakeModelServer(port=args.port)
    server.reply = [word + " " for word in args.reply.split()]
    server.delay = args.delay
    print(f"Fake model server on {server.base_url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":
    main()
