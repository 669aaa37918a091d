"""The wire contract: envelopes, payload validation, masking."""
import uuid

import pytest

from services.common import contract


def submitted_data(**over):
    data = {"request_id": str(uuid.uuid4()), "category": "haircut", "summary": "剪短一点", "building": "3",
            "unit": "1", "masked_phone": "138****1234", "mode": "home", "window_start": None,
            "window_end": None, "urgency": "normal"}
    data.update(over)
    return data


def test_envelope_round_trip():
    env = contract.envelope(contract.REQUEST_SUBMITTED, submitted_data(), source="requests")
    assert set(env) == {"id", "type", "version", "occurred_at", "source", "data"}
    opened, data = contract.open_envelope(contract.REQUEST_SUBMITTED, env)
    assert str(opened["id"]) == env["id"]
    assert opened["occurred_at"].tzinfo is not None
    assert data["category"] == "haircut"


def test_producer_refuses_a_payload_that_breaks_the_contract():
    with pytest.raises(contract.ContractError) as exc:
        contract.envelope(contract.REQUEST_SUBMITTED, submitted_data(category="teleport"), source="requests")
    assert "category" in exc.value.messages


@pytest.mark.parametrize("mutate, field", [
    (lambda e: e.pop("id"), "id"),
    (lambda e: e.update(version=99), "version"),
    (lambda e: e.update(type="notify.send"), "type"),
    (lambda e: e.update(source="internet"), "source"),
    (lambda e: e["data"].pop("request_id"), "data"),
    (lambda e: e["data"].update(extra="x"), "data"),
])
def test_consumer_side_rejects_malformed_envelopes(mutate, field):
    env = contract.envelope(contract.REQUEST_SUBMITTED, submitted_data(), source="requests")
    mutate(env)
    with pytest.raises(contract.ContractError) as exc:
        contract.open_envelope(contract.REQUEST_SUBMITTED, env)
    assert field in exc.value.messages


def test_not_an_object_is_rejected():
    with pytest.raises(contract.ContractError):
        contract.open_envelope(contract.STATUS_CHANGED, "hello")


def test_every_task_goes_to_its_service_queue():
    assert contract.queue_for(contract.REQUEST_SUBMITTED) == "volunteers"
    assert contract.queue_for(contract.STATUS_CHANGED) == "requests"
    assert contract.queue_for(contract.NOTIFY_SEND) == "notify"
    with pytest.raises(ValueError):
        contract.queue_for("payments.charge")


def test_masking():
    assert contract.mask_phone("13812341234") == "138****1234"
    assert contract.mask_phone("0571-88880000") == "057****0000"
    assert contract.mask_url("wecombot://abcdef-secret-key") == "wecombot://****"
    masked = contract.mask_url("mailto://user:pass@smtp.example.org?to=a@b.c")
    assert "pass" not in masked and "a@b.c" not in masked
    assert contract.mask_url("json://127.0.0.1:9000/hook?token=s3cret") == "json://127.0.0.1:9000/****"


def test_staff_only_categories_are_not_volunteer_skills():
    staff = {c.code for c in contract.CATEGORIES if c.staff_only}
    assert staff == {"lift_retrofit", "parking", "environment", "complaint", "welfare"}
    assert not staff & set(contract.VOLUNTEER_SKILLS)
    # A programme's own categories (visits) are never a resident's to ask for.
    assert {c.code for c in contract.CATEGORIES if c.programme} == {"visit", "welfare"}
    assert not {"visit", "welfare"} & {c.code for c in contract.RESIDENT_CATEGORIES}


def test_the_readmes_task_table_names_every_task_of_the_contract():
    """A newcomer finds each event's producer and consumer in the README:
    the table and services/common/contract.py stay in step."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("| task (queue) | producer | consumer | payload |", 1)[1].split("\n\n", 1)[0]
    task_name = r"(?:requests|volunteers|notify|community)\.[a-z_]+"
    in_readme = set(re.findall(f"`({task_name})`", table))
    in_contract = {value for name, value in vars(contract).items()
                   if name.isupper() and isinstance(value, str) and re.fullmatch(task_name, value)}
    assert in_contract, "no task names found in the contract"
    assert in_readme == in_contract, f"README only: {in_readme - in_contract}; contract only: {in_contract - in_readme}"
    # Every place the table names (`path` or `path: function`) is there.
    root = Path(__file__).resolve().parents[1]
    for path, _, function in re.findall(r"`(services/[\w/]+\.py)(: (\w+))?`", table):
        source = (root / path).read_text(encoding="utf-8")
        assert not function or re.search(rf"^\s*def {function}\(", source, re.M), f"{path} has no {function}"


def test_the_tests_messages_carry_what_their_producers_send(make_app):
    """The messages tests build (tests/factories.py) have the same fields as
    the real producers' (intake's operations, matching's dispatcher), so a
    consumer is never tested on a message nobody sends."""
    from sqlalchemy import select

    from services.requests.models import OutboxMessage as IntakeOutbox
    from tests import factories

    def sent(app, outbox_model, task_name):
        with app.app_context():
            rows = app.extensions["db"].Session.scalars(select(outbox_model).where(outbox_model.task_name == task_name))
            return [row.envelope["data"] for row in rows]

    intake = make_app("requests")
    client = intake.test_client()
    created = client.post("/api/v1/requests", json=factories.resident_request()).json
    [produced] = sent(intake, IntakeOutbox, contract.REQUEST_SUBMITTED)
    assert produced.keys() == factories.submitted()["data"].keys()
    client.post(f"/api/v1/requests/{created['tracking_code']}/cancel", json={"reason": "不需要了"})
    [produced] = sent(intake, IntakeOutbox, contract.REQUEST_CANCELLED)
    assert produced.keys() == factories.cancelled(created["id"])["data"].keys()

    second = client.post("/api/v1/requests", json=factories.resident_request()).json
    from services.requests import tasks as intake_tasks
    with intake.app_context():
        for status in ("assigned", "completed"):
            told = factories.status_changed(second["id"], status)
            assert intake_tasks.status_changed.apply(args=[told]).get() == "done"
    answer = client.post(f"/api/v1/requests/{second['tracking_code']}/feedback",
                         json={"rating": 5, "thanks": True, "comment": "谢谢"})
    assert answer.status_code == 201, answer.json
    [produced] = sent(intake, IntakeOutbox, contract.FEEDBACK_RECEIVED)
    assert produced.keys() == factories.feedback(second["id"])["data"].keys()

    world = factories.World(make_app("volunteers"))
    factories.register(world.app)
    req = world.receive(factories.submitted())
    world.at(factories.NOW).accept(world.offers()[0])
    world.session.commit()
    told = world.events(contract.STATUS_CHANGED)
    assert told and all(t.keys() == factories.status_changed(req.id)["data"].keys() for t in told)
    world.session.close()
