"""A fake OpenAI-compatible model server for load: asyncio, one process, any number of
streams. Each reply is --tokens pieces at --rate a second, and each piece's text starts
with the time it was sent, so a client can tell how long it took to reach it.

    .venv/bin/python bench/model_server.py --port 8001 --tokens 100 --rate 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import uvloop

CHUNK = (
    'data: {"object":"chat.completion.chunk","choices":[{"index":0,'
    '"delta":{"content":"%s"},"finish_reason":null}]}\n\n'
)
FINISH = (
    'data: {"object":"chat.completion.chunk","choices":[{"index":0,'
    '"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


def chunked(text: str) -> bytes:
    raw = text.encode()
    return b"%x\r\n%s\r\n" % (len(raw), raw)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, args) -> None:
    try:
        while True:  # keep-alive: one request after another
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            json.loads(await reader.readexactly(length))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for n in range(args.tokens):
                if n:
                    await asyncio.sleep(1 / args.rate)
                writer.write(chunked(CHUNK % f"{time.time():.6f} "))
                await writer.drain()
            writer.write(chunked(FINISH) + b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(args) -> None:
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args), "127.0.0.1", args.port, backlog=4096
    )
    print(f"model server on http://127.0.0.1:{args.port}/v1", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0, help="pieces a second")
    uvloop.run(serve(parser.parse_args()))  # the bench's own processes stay light


if __name__ == "__main__":
    main()
