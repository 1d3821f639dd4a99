"""The seed page's client examples work unchanged against the service (host aside).

Each example is the seed's code with only the URL and `<token>` filled in.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys

import pytest

PYTHON_EXAMPLE = """
import requests

url = "{url}"

payload = {{}}
headers = {{
    "Authorization": "Bearer {token}",
    "Content-Type": "application/json"
}}

response = requests.post(url, json=payload, headers=headers)

print(response.json())
"""

JAVASCRIPT_EXAMPLE = """
const url = '{url}';
const options = {{
  method: 'POST',
  headers: {{Authorization: 'Bearer {token}', 'Content-Type': 'application/json'}},
  body: '{{}}'
}};

try {{
  const response = await fetch(url, options);
  const data = await response.json();
  console.log(JSON.stringify(data));
}} catch (error) {{
  console.error(error);
}}
"""


@pytest.fixture
def endpoint(live_server: str) -> str:
    return f"{live_server}/api/florent/conversations"


@pytest.fixture
def token(make_token) -> str:
    return make_token("user_9876543210", "org_01ACME")


def assert_created(body: dict) -> None:
    conversation = body["conversation"]
    assert conversation["userId"] == "user_9876543210"
    assert conversation["title"] == "New conversation"
    assert conversation["messageCount"] == 0


def test_python_requests_example(endpoint, token):
    script = PYTHON_EXAMPLE.format(url=endpoint, token=token)
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert_created(ast.literal_eval(output))  # the example prints a Python dict


def test_javascript_fetch_example(endpoint, token, tmp_path):
    node = shutil.which("node")
    assert node, "node is part of this machine image and runs the seed's JavaScript example"
    script = tmp_path / "example.mjs"  # top-level await needs a module
    script.write_text(JAVASCRIPT_EXAMPLE.format(url=endpoint, token=token))
    output = subprocess.run(
        [node, str(script)], capture_output=True, text=True, timeout=30, check=True
    )
    assert_created(json.loads(output.stdout))


def test_curl_with_form_default_content_type(endpoint, token):
    output = subprocess.run(
        [
            "curl",
            "-sS",
            "-i",
            "-X",
            "POST",
            endpoint,
            "-H",
            f"Authorization: Bearer {token}",
            "-d",
            "{}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    head, _, body = output.partition("\n\n")  # text mode folds CRLF
    assert head.startswith("HTTP/1.1 201")
    assert "Location: /api/florent/conversations/" in head
    assert_created(json.loads(body))
