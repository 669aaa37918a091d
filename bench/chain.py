"""The event path's floor: three no-op Celery hops on the same Redis, with
the same settings as Linli's workers (acks_late, prefetch 1, JSON), one
worker per hop's queue. The last hop records when the chain arrived.
bench/run.py starts each worker with the Procfile's own worker command
(its flags: pool, concurrency, log level), only the app, queue and name
changed:

    celery -A bench.chain:app worker -Q hop1|hop2|hop3 -n hop1@%h <the Procfile's flags>
"""
import os
import time

import redis
from celery import Celery
from kombu import Queue

from services.common.queueing import celery_settings
from services.common.settings import queue_config

BROKER = os.environ.get("LINLI_REDIS_URL", "redis://127.0.0.1:6379/13")
app = Celery("chain")
settings = celery_settings({**queue_config(), "REDIS_URL": BROKER}, "hop1")
settings.update(task_queues=[Queue(q) for q in ("hop1", "hop2", "hop3")], task_routes=None, task_default_queue="hop1")
app.config_from_object(settings)
_results = None


def results():
    global _results
    if _results is None:
        _results = redis.Redis.from_url(BROKER)
    return _results


@app.task(name="hop1")
def hop1(planned, key):
    app.send_task("hop2", args=[planned, key], queue="hop2")


@app.task(name="hop2")
def hop2(planned, key):
    app.send_task("hop3", args=[planned, key], queue="hop3")


@app.task(name="hop3")
def hop3(planned, key):
    results().rpush(key, f"{planned} {time.time()}")
