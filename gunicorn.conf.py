"""gunicorn settings, read by `gunicorn wsgi:app` from the working directory.

Every value can be overridden from the environment (README, "Running in production").
It imports nothing of the app.
"""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


STREAMS = bool(os.environ.get("FLORENT_LLM_BASE_URL", "").strip())

# Loopback unless told otherwise: the service belongs behind a buffering proxy.
bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = _int("GUNICORN_WORKERS", multiprocessing.cpu_count() + 1)
# A streamed reply holds what serves it for its whole length: threads serve many at once.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread" if STREAMS else "sync")
threads = _int("GUNICORN_THREADS", 16 if STREAMS else 1)
# Without streams a request is bounded by the app's own timeouts (database about 3 s,
# JWKS about 2 s), so a sync worker silent this long is stuck and is replaced.
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Each worker touches a heartbeat file on every request; gunicorn's docs advise memory
# rather than a disk-backed filesystem for it.
worker_tmp_dir = os.environ.get(
    "GUNICORN_WORKER_TMP_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else None
)
# gunicorn's control socket is one per user by default, shared by every instance on the
# host; each instance may name its own instead.
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
# The app writes one JSON line per request itself.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
