"""The pool's liveness check at checkout (database.is_dead) polls with the standard
library's poll: gevent's, which select.poll is once gevent has patched it, lets every
other greenlet run before it answers, even with a zero timeout. Checked in a process of
its own, patched as a gevent worker is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

UNDER_GEVENT = """
from gevent import monkey; monkey.patch_all()
import select, socket, gevent
from florent.database import _unpatched_poll

def poll_once(poll):
    others = []
    gevent.spawn(others.append, "ran")  # runs only when the hub gets control
    ours, theirs = socket.socketpair()
    theirs.sendall(b"x")
    poller = poll()
    poller.register(ours.fileno(), select.POLLIN)
    readable = bool(poller.poll(0))
    return {"others_ran": bool(others), "readable": readable}

print(poll_once(select.poll)["others_ran"], poll_once(_unpatched_poll()))
"""


def test_the_checkout_check_answers_at_once_where_gevents_poll_yields():
    done = subprocess.run(
        [sys.executable, "-c", UNDER_GEVENT], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # gevent's poll lets others run (when this fails, is_dead can use select.poll again);
    # the check's poll does not, and sees the readable socket.
    assert done.stdout.strip() == "True {'others_ran': False, 'readable': True}"
