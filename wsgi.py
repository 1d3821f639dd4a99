"""The WSGI entry point: `gunicorn wsgi:app`."""

from florent import create_app

app = create_app()
