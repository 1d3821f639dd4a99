"""gunicorn settings, read by `gunicorn wsgi:app` from the working directory.

Every value can be overridden from the environment. The defaults were chosen by
measurement on a 2-core machine (README, "Performance"):

- API only: sync workers, one per core plus one. On the database paths they match
  gthread's throughput with far steadier tails (p99/p50 about 1.5 against 3 to 5), and
  with PostgreSQL on the same cores, 3 workers beat 5 here (list 0.24 against 0.18 x
  the bare-Flask baseline, averaged over three alternating runs).
- The sync worker is florent.serving.SyncWorker: gunicorn's, except that it does not
  wait for each client to hang up after its response unless the client may still be
  sending (create 0.321 against 0.300 x the baseline over ten alternating rounds, get
  0.467 against 0.419 over six), and sends a response in as few packets as it fits
  (create 0.372 against 0.352 over six rounds, and 0.360 against 0.344 over six more).
- With Florent replies on (FLORENT_LLM_BASE_URL set): gthread. A streamed reply holds
  whatever serves it for seconds to minutes; a sync worker would be one stream per
  process (and killed after `timeout`), while a gthread worker serves many, and its
  timeout only watches the worker's heartbeat.
"""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


STREAMS = bool(os.environ.get("FLORENT_LLM_BASE_URL", "").strip())

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = _int("GUNICORN_WORKERS", multiprocessing.cpu_count() + 1)
worker_class = os.environ.get(
    "GUNICORN_WORKER_CLASS", "gthread" if STREAMS else "florent.serving.SyncWorker"
)
threads = _int("GUNICORN_THREADS", 16 if STREAMS else 1)
# Without streams a request is bounded by the app's own timeouts (database about 3 s,
# JWKS about 2 s), so a sync worker silent this long is stuck and is replaced.
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Each worker touches a heartbeat file on every request. On a disk-backed filesystem
# (the default, the temporary directory) that can block the worker, as gunicorn's docs
# warn, all the more with PostgreSQL flushing its WAL to the same disk; memory does not.
worker_tmp_dir = os.environ.get(
    "GUNICORN_WORKER_TMP_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else None
)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# The app writes one JSON line per request itself.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
