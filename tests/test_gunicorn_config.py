"""gunicorn.conf.py: gunicorn's own workers, on loopback unless told, one control
socket per instance at most."""

from __future__ import annotations

import gc
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each test runs gunicorn (to print its configuration): not for `make test-fast`.
pytestmark = pytest.mark.slow


def effective_config(**environ: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "PORT"))}
    output = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--print-config", "wsgi:app"],
        cwd=ROOT,
        env={**env, **environ},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return dict(
        (name.strip(), value.strip())
        for name, _, value in (line.partition("=") for line in output.splitlines())
        if value
    )


def test_gunicorn_binds_to_loopback_with_its_own_workers_by_default():
    config = effective_config()
    assert config["bind"] == "['127.0.0.1:8000']"
    assert config["worker_class"].rsplit(".", 1)[-1] in ("sync", "gthread", "gevent")
    assert config["control_socket_disable"] == "True"


def test_bind_and_control_socket_come_from_the_environment(tmp_path):
    socket = str(tmp_path / "gunicorn.ctl")
    config = effective_config(PORT="9001", GUNICORN_CONTROL_SOCKET=socket)
    assert config["bind"] == "['127.0.0.1:9001']"
    assert (config["control_socket_disable"], config["control_socket"]) == ("False", socket)
    assert effective_config(GUNICORN_BIND="0.0.0.0:8080")["bind"] == "['0.0.0.0:8080']"


def test_a_worker_moves_the_loaded_apps_objects_out_of_the_collectors_way(monkeypatch):
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the config sets defaults in it
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert gc.get_freeze_count() == 0
    try:
        config["post_worker_init"](worker=None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
