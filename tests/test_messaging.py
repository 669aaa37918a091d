"""The outbox and the idempotent consumer, on SQLite and PostgreSQL."""
import base64
import json
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services.common import contract
from services.requests import tasks as intake_tasks
from services.requests.models import DeadMessage, OutboxMessage, ServiceRequest, StatusChange
from tests.conftest import SECRETS, UNIT_REDIS_URL
from tests.factories import RESIDENT, status_changed

# A port nobody listens on: Redis "down".
DOWN_REDIS_URL = "redis://127.0.0.1:1/0"


def count(app, model):
    with app.app_context():
        return app.extensions["db"].Session.scalar(select(func.count()).select_from(model))


def test_a_rollback_produces_no_event(make_app, unit_redis):
    app = make_app("requests")
    outbox = app.extensions["outbox"]
    session = app.extensions["db"].Session
    with app.app_context():
        outbox.emit(session, contract.STATUS_CHANGED, {"request_id": str(uuid.uuid4()), "status": "assigned",
                                                       "actor": "test", "note": "", "volunteer_name": None})
        session.rollback()
    assert count(app, OutboxMessage) == 0
    assert unit_redis.llen("requests") == 0


def test_redis_down_still_takes_the_request_and_the_relay_sends_it_later(make_app, backend, unit_redis):
    down = make_app("requests", backend=backend, REDIS_URL=DOWN_REDIS_URL)
    started = time.monotonic()
    resp = down.test_client().post("/api/v1/requests", json=RESIDENT)
    elapsed = time.monotonic() - started
    assert resp.status_code == 201 and resp.json["tracking_code"]
    assert elapsed < 10  # answered, not hung (generous: this is a correctness check, not a benchmark)
    outbox = down.extensions["outbox"]
    assert outbox.pending() == 1
    with down.app_context():
        row = down.extensions["db"].Session.scalar(select(OutboxMessage))
        assert row.attempts == 1 and row.last_error

    # Redis is back: the periodic relay (same database, working broker) sends it.
    from services.requests import create_app
    up = create_app({"DATABASE_URL": down.config["DATABASE_URL"], "REDIS_URL": UNIT_REDIS_URL, **SECRETS})
    assert up.extensions["outbox"].relay(grace=timedelta(0)) == 1
    assert up.extensions["outbox"].pending() == 0
    assert unit_redis.llen("volunteers") == 1


@pytest.fixture
def intake_with_request(make_app, backend):
    app = make_app("requests", backend=backend)
    request_id = app.test_client().post("/api/v1/requests", json=RESIDENT).json["id"]
    return app, request_id


def run(app, task, message):
    with app.app_context():
        return task.apply(args=[message]).get()


def test_the_same_message_twice_has_one_effect(intake_with_request):
    app, request_id = intake_with_request
    message = status_changed(request_id)
    assert run(app, intake_tasks.status_changed, message) == "done"
    assert run(app, intake_tasks.status_changed, message) == "duplicate"
    with app.app_context():
        session = app.extensions["db"].Session
        req = session.get(ServiceRequest, request_id)
        assert req.status == "assigned" and req.volunteer_name == "王建国"
        assert [h.status for h in req.history] == ["submitted", "assigned"]
        # One notification to the resident, not two.
        notes = session.scalars(select(OutboxMessage).where(OutboxMessage.task_name == contract.NOTIFY_SEND)).all()
        assert len(notes) == 1
        assert notes[0].envelope["data"]["recipient"] == f"resident:{request_id}"


def test_a_stale_status_is_ignored(intake_with_request):
    app, request_id = intake_with_request
    # The offer was made before the acceptance, but its event arrives after.
    offered = status_changed(request_id, "offered")
    run(app, intake_tasks.status_changed, status_changed(request_id, "assigned"))
    assert run(app, intake_tasks.status_changed, offered) == "done"
    with app.app_context():
        req = app.extensions["db"].Session.get(ServiceRequest, request_id)
        assert req.status == "assigned"
        assert count(app, StatusChange) == 2


@pytest.mark.parametrize("breakage", ["schema", "version", "garbage"])
def test_a_malformed_message_is_recorded_dead_and_the_worker_goes_on(intake_with_request, breakage):
    app, request_id = intake_with_request
    message = status_changed(request_id)
    if breakage == "schema":
        message["data"]["status"] = "teleported"
    elif breakage == "version":
        message["version"] = 7
    else:
        message = ["not", "an", "envelope"]
    assert run(app, intake_tasks.status_changed, message) == "dead"
    with app.app_context():
        dead = app.extensions["db"].Session.scalar(select(DeadMessage))
        assert dead.task_name == contract.STATUS_CHANGED and dead.error.startswith("contract")
        assert app.extensions["db"].Session.get(ServiceRequest, request_id).status == "submitted"
    # The next good message is handled as usual.
    assert run(app, intake_tasks.status_changed, status_changed(request_id)) == "done"


def test_a_message_about_an_unknown_request_is_dead_not_retried(intake_with_request):
    app, _ = intake_with_request
    assert run(app, intake_tasks.status_changed, status_changed(str(uuid.uuid4()))) == "dead"
    assert count(app, DeadMessage) == 1


def test_a_request_matching_never_answered_is_sent_again(make_app, unit_redis):
    """The broker may lose a message after the outbox handed it over (a worker
    killed between taking it and recording it): intake sends a request that is
    still only `submitted` again, under a new envelope, until matching answers."""
    from services.requests.operations import resend_unanswered

    app = make_app("requests")
    request_id = app.test_client().post("/api/v1/requests", json=RESIDENT).json["id"]
    outbox, key = app.extensions["outbox"], app.config["PHONE_DIGEST_KEY"]
    session = app.extensions["db"].Session
    with app.app_context():
        assert resend_unanswered(session, outbox, key, timedelta(seconds=60)) == 0  # too young
        assert resend_unanswered(session, outbox, key, timedelta(0)) == 1
        session.commit()
        assert resend_unanswered(session, outbox, key, timedelta(seconds=60)) == 0  # just sent
        events = session.scalars(select(OutboxMessage).where(
            OutboxMessage.task_name == contract.REQUEST_SUBMITTED)).all()
        assert len(events) == 2 and len({e.id for e in events}) == 2
        assert {e.envelope["data"]["request_id"] for e in events} == {request_id}
    assert unit_redis.llen("volunteers") == 2
    run(app, intake_tasks.status_changed, status_changed(request_id, "offered"))
    with app.app_context():
        # Answered: nothing more while the status is fresh...
        assert resend_unanswered(session, outbox, key, timedelta(0), still_after=timedelta(seconds=60)) == 0
        # ...but an open status that has not moved for long is asked about again (a later
        # answer, "assigned" say, may have been lost the same way).
        req = session.get(ServiceRequest, request_id)
        req.updated_at = req.resent_at = req.updated_at - timedelta(minutes=10)
        session.commit()
        assert resend_unanswered(session, outbox, key, timedelta(seconds=60)) == 1
        session.commit()
    # Matching retells the status intake has: the timeline does not grow.
    retold = contract.envelope(contract.STATUS_CHANGED, {"request_id": request_id, "status": "offered",
                                                         "actor": "matching", "note": ""}, source="volunteers")
    assert run(app, intake_tasks.status_changed, retold) == "done"
    with app.app_context():
        assert [h.status for h in session.get(ServiceRequest, request_id).history] == ["submitted", "offered"]


def test_web_processes_publish_from_a_thread_once_and_in_order(make_app, backend, unit_redis):
    from tests.receivers import wait_for

    app = make_app("requests", backend=backend, PUBLISH_IN_BACKGROUND=True)
    client = app.test_client()
    ids = [client.post("/api/v1/requests", json=RESIDENT).json["id"] for _ in range(30)]
    outbox = app.extensions["outbox"]
    wait_for(lambda: outbox.pending() == 0, timeout=10, what="the publisher thread to send every event")
    bodies = [json.loads(base64.b64decode(json.loads(raw)["body"]))  # Celery's (args, kwargs, embed)
              for raw in reversed(unit_redis.lrange("volunteers", 0, -1))]
    sent = [contract.open_envelope(contract.REQUEST_SUBMITTED, args[0])[1]["request_id"] for args, _, _ in bodies]
    assert [str(i) for i in sent] == ids  # every event once, in commit order


def test_a_background_publish_that_fails_leaves_the_event_for_the_relay(make_app, unit_redis):
    from tests.receivers import wait_for

    down = make_app("requests", REDIS_URL=DOWN_REDIS_URL, PUBLISH_IN_BACKGROUND=True)
    started = time.monotonic()
    assert down.test_client().post("/api/v1/requests", json=RESIDENT).status_code == 201
    assert time.monotonic() - started < 10
    outbox = down.extensions["outbox"]
    with down.app_context():
        wait_for(lambda: down.extensions["db"].Session.scalar(select(OutboxMessage.attempts)) == 1, timeout=10,
                 what="the failed attempt recorded")
    assert outbox.pending() == 1
