"""Every consumer, the same way: a malformed message is recorded as dead
and the worker carries on; the same message twice has one effect; a
message that keeps killing its worker stops being retried."""
from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from services.common import contract
from services.common.inbox import MAX_HANDOUTS, consume
from tests.conftest import UNIT_REDIS_URL

REQUEST_ID = str(uuid.uuid4())
VALID = {
    contract.REQUEST_SUBMITTED: {"request_id": REQUEST_ID, "category": "haircut", "summary": "理发", "building": "3",
                                 "unit": "1", "masked_phone": "138****1234", "mode": "home",
                                 "window_start": None, "window_end": None, "urgency": "normal"},
    contract.REQUEST_CANCELLED: {"request_id": REQUEST_ID, "actor": "resident", "reason": ""},
    contract.FEEDBACK_RECEIVED: {"request_id": REQUEST_ID, "rating": 5},
    contract.DELIVERY_FAILED: {"dedupe_key": "offer:999", "recipient": "volunteer:1", "template": "offer"},
    contract.NOTIFY_SEND: {"dedupe_key": "k", "recipient": "volunteer:1", "template": "magic_link",
                           "context": {"login_url": "http://x", "minutes": 30}},
    contract.INBOX_READ: {"recipient": "volunteer:1", "up_to_id": 1},
    contract.STATION_CHANGE: {"action": "add_station", "actor": "staff:1",
                              "station": {"code": "hall-9", "name": "九号站", "place": "九幢"}},
}
SERVICE = {name: contract.queue_for(name) for name in VALID}


def task_of(app, name):
    return app.extensions["celery"].tasks[name]


@pytest.fixture
def apps(make_app):
    return {service: make_app(service) for service in ("volunteers", "notify")}


@pytest.mark.parametrize("name", list(VALID))
def test_every_consumer_buries_malformed_messages_and_dedupes(apps, name):
    app = apps[SERVICE[name]]
    models = __import__(f"services.{SERVICE[name]}.models", fromlist=["DeadMessage", "ProcessedMessage"])
    task = task_of(app, name)
    bad = contract.envelope(name, VALID[name], source="requests")
    bad["data"]["unexpected"] = True
    with app.app_context():
        assert task.apply(args=[bad]).get() == "dead"
        good = contract.envelope(name, VALID[name], source="requests")
        if name == contract.REQUEST_CANCELLED:  # needs the request first
            task_of(app, contract.REQUEST_SUBMITTED).apply(
                args=[contract.envelope(contract.REQUEST_SUBMITTED, VALID[contract.REQUEST_SUBMITTED],
                                        source="requests")]).get()
        assert task.apply(args=[good]).get() == "done"
        assert task.apply(args=[good]).get() == "duplicate"
        session = app.extensions["db"].Session
        assert session.scalar(select(func.count()).select_from(models.DeadMessage)) == 1
        assert session.scalar(select(models.ProcessedMessage).where(models.ProcessedMessage.id == good["id"]))


def test_a_message_that_keeps_killing_its_worker_is_buried(apps, unit_redis):
    """Each handout again of a Celery message (kombu marks it redelivered)
    is counted in Redis by task id; a worker killed mid-task never
    finishes, so the count climbs until the message is recorded as dead
    instead of looping forever."""
    from services.volunteers.models import DeadMessage, ProcessedMessage

    app = apps["volunteers"]
    message = contract.envelope(contract.REQUEST_SUBMITTED, VALID[contract.REQUEST_SUBMITTED], source="requests")
    # What Celery hands a task: its name, its request (the id survives a handout again), its broker.
    task = SimpleNamespace(name=contract.REQUEST_SUBMITTED,
                           app=SimpleNamespace(conf=SimpleNamespace(broker_url=UNIT_REDIS_URL)),
                           request=SimpleNamespace(id="celery-task-1", retries=0, is_eager=False,
                                                   delivery_info={"redelivered": False}))
    runs = []

    def crashes(session, data, env):
        runs.append(env["id"])
        raise SystemExit("killed")  # not an Exception: like kill -9, nothing is recorded

    with app.app_context():
        db = app.extensions["db"]
        for _ in range(MAX_HANDOUTS):
            with pytest.raises(SystemExit):
                consume(task, message, crashes, db=db, processed=ProcessedMessage, dead=DeadMessage)
            task.request.delivery_info = {"redelivered": True}  # as kombu puts it back
        assert consume(task, message, crashes, db=db, processed=ProcessedMessage, dead=DeadMessage) == "dead"
        assert len(runs) == MAX_HANDOUTS
        assert "handed to a worker more than" in db.Session.scalar(select(DeadMessage)).error


def test_every_log_line_of_a_task_carries_its_task_id(apps):
    """A malformed message is logged as dead from inside its task: that line
    (and Celery's own) names the task, so one task's lines can be found together."""
    import io
    import json
    import logging

    from services.common.web import JsonFormatter

    app = apps["volunteers"]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    bad = contract.envelope(contract.REQUEST_CANCELLED, VALID[contract.REQUEST_CANCELLED], source="requests")
    bad["data"]["unexpected"] = True
    try:
        with app.app_context():
            result = task_of(app, contract.REQUEST_CANCELLED).apply(args=[bad])
        logging.getLogger("tests").warning("outside any task")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = {line["msg"]: line for line in map(json.loads, stream.getvalue().splitlines())}
    dead = lines["message recorded as dead"]
    assert dead["task_id"] == result.id and dead["task"] == contract.REQUEST_CANCELLED
    assert "task_id" not in lines["outside any task"]
