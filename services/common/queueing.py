"""Celery set-up shared by every service, so that the settings that must be
the same everywhere are written once.

Why each setting:
- JSON only, no result backend: messages are plain data, state lives in the
  owning service's database.
- acks_late + prefetch 1 + reject_on_worker_lost: a task whose worker dies is
  handed out again, not lost; consumers are idempotent so that is safe.
- task_create_missing_queues=False and explicit queues: a typo in a task name
  fails at the producer instead of filling a queue nobody reads.
- Short socket timeouts: publishing to a frozen Redis fails fast and the
  event waits in the outbox, instead of hanging a resident's HTTP request.
- visibility_timeout longer than the hard time limit, so Redis does not
  hand a still-running task to a second worker; it is also how long a task
  whose worker was killed waits before Redis hands it out again.
- Soft shutdown: on a stop the worker finishes what it holds for a while
  (below compose's stop grace period), then gives the rest back.
- A handout cap (services.common.inbox): a message that keeps killing
  its worker is recorded as dead after a few handouts instead of looping.
"""
from __future__ import annotations

import logging

import redis
from celery import Celery, Task, signals
from kombu import Queue

from . import contract

REDIS_TIMEOUT = 2.0  # seconds, socket and connect
SOFT_SHUTDOWN_SECONDS = 10  # < stop_grace_period in docker-compose.yml


_clients: dict[str, redis.Redis] = {}


def redis_client(url: str) -> redis.Redis:
    """One client (and connection pool) per process and URL. A client made
    per call cost a connection, its handshake and a read of redis-py's
    package metadata each time, a large share of a worker's CPU under load
    (py-spy). redis-py's pool notices a fork and starts afresh in the child."""
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT,
                                                      socket_connect_timeout=REDIS_TIMEOUT)
    return client


def route(name, args, kwargs, options, task=None, **kw):
    return {"queue": contract.queue_for(name)}


def celery_settings(config, queue: str | None) -> dict:
    """Celery's settings from a service's configuration (services.common.settings)."""
    time_limit = config["TASK_TIME_LIMIT"]
    return {
        "broker_url": config["REDIS_URL"],
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": config["VISIBILITY_TIMEOUT"],
            "socket_timeout": REDIS_TIMEOUT,
            "socket_connect_timeout": REDIS_TIMEOUT,
            "retry_on_timeout": False,
            # Publishing gives up at once when Redis is down (the outbox keeps
            # the message); without this kombu retries with pauses for seconds.
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.1,
            "interval_max": 0.2,
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_create_missing_queues": False,
        "task_queues": [Queue(q) for q in contract.QUEUES],
        "task_default_queue": queue or contract.QUEUES[0],
        "task_routes": (route,),
        "task_time_limit": time_limit,
        "task_soft_time_limit": max(1, int(time_limit * 0.8)),
        "worker_soft_shutdown_timeout": SOFT_SHUTDOWN_SECONDS,
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        "enable_utc": True,
        "timezone": "UTC",
    }


@signals.after_setup_logger.connect
def quiet_task_received(loglevel=None, **kwargs) -> None:
    """One INFO line a task, not two: Celery's "Task … succeeded/failed/retry"
    line (task id, name, outcome and run time) stays; its "Task … received"
    line, the same id and name again, shows only when the worker logs at
    DEBUG. Set on the logger itself, Celery then skips building the line
    (its strategy reads the level once), a JSON line a task less (py-spy)."""
    strategy = logging.getLogger("celery.worker.strategy")
    strategy.setLevel(logging.NOTSET if (loglevel or logging.INFO) <= logging.DEBUG else logging.WARNING)


def celery_init_app(app, queue: str) -> Celery:
    """Bind a Celery app to a Flask app (pallets/flask examples/celery)."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.import_name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_settings(app.config, queue))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def publish(celery_app: Celery, task_name: str, message: dict | None = None) -> None:
    """Send a task by name onto its service's queue, without retrying: the
    caller (the outbox) keeps the message and tries again later."""
    celery_app.send_task(
        task_name,
        args=[message] if message is not None else [],
        queue=contract.queue_for(task_name),
        retry=False,
        # Workers log a task's arguments as given here: the envelope id
        # only, never the payload (phones, channel URLs).
        argsrepr=f"[{message['id']}]" if message else "[]",
        kwargsrepr="{}",
    )
