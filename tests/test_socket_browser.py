"""Real Chromium opens the conversation's WebSocket with a ticket, as the product's web
client does, and receives a streamed reply."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .browser import chromium
from .conftest import bearer
from .factories import URL
from .serving import gunicorn

pytestmark = pytest.mark.slow  # a browser and gunicorn

CONVERSE = """
async ([url, content]) => {
  const frames = [];
  const socket = new WebSocket(url);
  await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
  const ended = new Promise((resolve) => {
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      frames.push(frame);
      if (["done", "stopped", "error"].includes(frame.type)) resolve();
    };
  });
  socket.send(JSON.stringify({type: "message", content}));
  await ended;
  socket.close();
  return frames;
}
"""


@pytest.fixture(scope="module")
def service(app, database_url, jwks_server, model_server) -> Iterator[Any]:
    with gunicorn(database_url, jwks_server.url, FLORENT_LLM_BASE_URL=model_server.base_url) as s:
        yield s


def test_chromium_opens_the_socket_with_a_ticket_and_receives_a_streamed_reply(
    service, make_token, model
):
    token = make_token("user_01ALICE", "org_01ACME")
    created = requests.post(f"{service.url}{URL}", json={}, headers=bearer(token), timeout=10)
    conversation_id = created.json()["conversation"]["_id"]
    grant = requests.post(
        f"{service.url}{URL}/{conversation_id}/ws-ticket", headers=bearer(token), timeout=10
    ).json()
    model.reply, model.delay = ["Bonjour", " depuis", " Florent"], 0.05

    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{service.url}/healthz")  # a page of the service's own origin
        frames = page.evaluate(CONVERSE, [f"{grant['wsUrl']}?ticket={grant['ticket']}", "Salut"])

    assert [frame["type"] for frame in frames] == ["message", "delta", "delta", "delta", "done"]
    assert frames[0]["message"]["content"] == "Salut"
    assert "".join(frame["text"] for frame in frames[1:-1]) == "Bonjour depuis Florent"
    assert frames[-1]["message"]["content"] == "Bonjour depuis Florent"
    assert frames[-1]["conversation"]["messageCount"] == 2
