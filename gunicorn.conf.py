"""gunicorn settings, read by `gunicorn wsgi:app` from the working directory.

Every value can be overridden from the environment. The defaults were chosen by
measurement on a 2-core machine (README, "Performance"): sync workers, about two
per core plus one, beat 2 x 8 gthread on the database paths with steadier tails.
"""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = _int("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = _int("GUNICORN_THREADS", 1)
# A request is bounded by the app's own timeouts (database ~3 s, JWKS ~2 s), so a
# worker silent for this long is stuck, and is replaced.
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# The app writes one JSON line per request itself.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
