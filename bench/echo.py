"""The intake ceiling: a bare Flask JSON echo, served by the same gunicorn
settings as the services (make bench compares intake against it)."""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/echo")
def echo():
    return jsonify(request.get_json(silent=True) or {}), 201
