"""The framework's ceiling: a bare Flask app answering a small JSON body.

Served by gunicorn with 3 sync workers beside the service in the same benchmark run.
"""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def hello():
    return jsonify(status="ok", service="baseline")
