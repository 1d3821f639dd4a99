"""gunicorn settings, read by `gunicorn wsgi:app` from the working directory.

Every value can be overridden from the environment (README, "Running in production").
It imports nothing of the app: gevent must patch the standard library before the app
(and psycopg, and urllib3) is imported, which gunicorn's gevent worker does in each worker.
"""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# Loopback unless told otherwise: the service belongs behind a buffering proxy.
bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
# Forwarded headers are believed in one place, the app (FLORENT_TRUSTED_PROXIES, through
# Werkzeug's ProxyFix). gunicorn's own trust in them (X-Forwarded-Proto, SCRIPT_NAME from
# loopback or a unix socket) is off, so with no trusted proxy they change nothing.
forwarded_allow_ips = ""
secure_scheme_headers = {}
forwarder_headers = ""
# gevent: each worker serves many connections at once on greenlets, so a streamed reply
# (seconds to minutes, mostly waiting on the model) costs a greenlet, not a worker.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
workers = _int("GUNICORN_WORKERS", multiprocessing.cpu_count())
# gevent resolves names with c-ares, in its loop; its default hands every lookup (each new
# connection to the model server) to a thread.
os.environ.setdefault("GEVENT_RESOLVER", "ares")
# Connections one worker serves at once: open replies, sockets and kept-alive clients.
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", 1000)
threads = _int("GUNICORN_THREADS", 1)  # gthread only
# gevent and gthread workers only miss their heartbeat when CPU-bound for this long.
timeout = _int("GUNICORN_TIMEOUT", 30)
# On a restart, open replies get this long to finish before they are cut.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 0)
# Each worker touches a heartbeat file; gunicorn's docs advise memory rather than a
# disk-backed filesystem for it.
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


def post_worker_init(worker):
    """Once the app is loaded: its objects live as long as the worker, so they leave the
    garbage collector's generations, and a full collection (which pauses every request
    and stream of the worker) walks only what requests created."""
    import gc

    gc.freeze()
