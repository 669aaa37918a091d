"""The intake ceiling: a bare Flask JSON echo, served by the same gunicorn
settings as the services (make bench compares intake against it)."""
from flask import Flask, jsonify, request

app = Flask(__name__)
# deploy/gunicorn.conf.py checks each app for demo data before it serves
# (services.common.factory.check_before_serving); the echo has none.
app.config["DEMO"] = False


@app.post("/echo")
def echo():
    return jsonify(request.get_json(silent=True) or {}), 201
