"""A community programme's request (a visit, or what a visitor found) in
intake and matching: intake makes one private request per reference and
sends it on with the visit's reference; matching offers it to the paired
volunteer first, or hands it to the leader it is for; the visitor records
what they found on completion, which goes back to the community service."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from services.common import contract
from services.common.clock import utcnow
from services.requests.models import OutboxMessage as IntakeOutbox
from services.requests.models import ServiceRequest
from services.volunteers.models import Assignment, Escalation, Leader
from services.volunteers.models import OutboxMessage as MatchingOutbox
from tests.conftest import csrf_token
from tests.factories import World, register, resident_request, sign_in, submitted


def programme_request(**over) -> dict:
    """The community service's requests.programme_request (visits.Visits.ask)."""
    data = {"ref": "visit:12", "category": "visit", "reason": "scheduled", "urgency": "normal", "building": "3",
            "unit": "1", "room": "301", "contact_name": "王秀英", "contact_phone": "13800001111", "elderly": True,
            "disability": False, "preferred_volunteer_id": None, "first_to": None, "window_start": None,
            "window_end": None, **over}
    return contract.envelope(contract.PROGRAMME_REQUEST, data, source="community")


def consume(app, message):
    with app.app_context():
        return app.extensions["celery"].tasks[message["type"]].apply(args=[message]).get()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_intake_makes_one_private_request_per_reference_and_sends_the_visit_on(make_app, backend):
    app = make_app("requests", backend=backend)
    message = programme_request(preferred_volunteer_id=7)
    assert consume(app, message) == "done"
    assert consume(app, message) == "duplicate"
    assert consume(app, programme_request(preferred_volunteer_id=7)) == "done"  # same ref, new envelope: no-op
    with app.app_context():
        s = app.extensions["db"].Session
        [req] = s.scalars(select(ServiceRequest)).all()
        assert (req.channel, req.category, req.programme_ref, req.entered_by) == ("programme", "visit", "visit:12",
                                                                                  "community")
        assert req.description.startswith("定期探访") and req.contact_name == "王秀英"
        [sent] = [r.envelope["data"] for r in s.scalars(select(IntakeOutbox).where(
            IntakeOutbox.task_name == contract.REQUEST_SUBMITTED))]
    assert (sent["programme_ref"], sent["preferred_volunteer_id"], sent["first_to"]) == ("visit:12", 7, None)
    assert "王秀英" not in str(sent) and "13800001111" not in str(sent)

    # Never public: not in Open311's feed, not a service residents can pick.
    client = app.test_client()
    assert client.get("/open311/v2/requests.json").get_json() == []
    assert "visit" not in [s["service_code"] for s in client.get("/open311/v2/services.json").get_json()]
    assert client.get("/open311/v2/services/visit.json").status_code == 404
    assert "visit" not in [c["code"] for c in client.get("/api/v1/categories").get_json()]
    refused = client.post("/api/v1/requests", json=resident_request(category="visit"))
    assert refused.status_code == 422 and "category" in refused.get_json()["errors"]["json"]


def test_what_a_visitor_found_reaches_intake_as_a_welfare_request_without_the_visits_reference(make_app):
    app = make_app("requests")
    consume(app, programme_request(ref="welfare:12:emergency", category="welfare", reason="emergency",
                                   urgency="urgent", first_to="office"))
    with app.app_context():
        s = app.extensions["db"].Session
        req = s.scalar(select(ServiceRequest))
        assert req.urgency == "urgent" and req.description.startswith("探访人员报告")
        [sent] = [r.envelope["data"] for r in s.scalars(select(IntakeOutbox).where(
            IntakeOutbox.task_name == contract.REQUEST_SUBMITTED))]
    assert sent["programme_ref"] is None and sent["first_to"] == "office"


@pytest.fixture
def world(make_app):
    w = World(make_app("volunteers"))
    yield w
    w.session.close()


def test_matching_offers_a_visit_to_the_paired_volunteer_first(world):
    near = register(world.app, skills=["visit"], building="3", unit="1")
    paired = register(world.app, skills=["visit"], building="40", unit="1")
    req = world.receive(submitted(category="visit", programme_ref="visit:5", preferred_volunteer_id=paired))
    assert [o.volunteer_id for o in world.offers(req.id)] == [paired]
    # Without a pairing the nearest goes first, as for any request.
    other = world.receive(submitted(category="visit", programme_ref="visit:6"))
    assert [o.volunteer_id for o in world.offers(other.id)] == [near]


def test_a_paired_volunteer_who_cannot_go_leaves_the_visit_to_the_usual_ranking(world):
    near = register(world.app, skills=["visit"], building="3", unit="1")
    no_visits = register(world.app, skills=["haircut"], building="3", unit="1")
    req = world.receive(submitted(category="visit", programme_ref="visit:5", preferred_volunteer_id=no_visits))
    assert [o.volunteer_id for o in world.offers(req.id)] == [near]


@pytest.mark.parametrize("first_to, category, level, reason", [
    ("hallway", "visit", 1, "visit"), ("office", "welfare", 3, "welfare"), (None, "welfare", 2, "welfare")])
def test_a_programme_request_for_a_leader_goes_to_that_leader(world, first_to, category, level, reason):
    register(world.app, skills=["visit"], building="3", unit="1")  # volunteers are not asked
    req = world.receive(submitted(category=category, first_to=first_to))
    esc = world.session.scalar(select(Escalation).where(Escalation.request_id == req.id))
    leader = world.session.get(Leader, esc.leader_id)
    assert (esc.level, esc.reason, leader.role) == (level, reason, {1: "hallway", 2: "grid", 3: "office"}[level])
    assert world.offers(req.id) == []
    [note] = [e for e in world.events(contract.NOTIFY_SEND) if e["template"] == "escalation"]
    assert note["recipient"] == f"leader:{leader.id}"


def test_the_visitor_says_what_they_found_on_completion_and_the_community_hears_it(world):
    register(world.app, phone="13900007777", skills=["visit"])
    req = world.receive(submitted(category="visit", programme_ref="visit:5"), utcnow())
    world.at(utcnow()).accept(world.offers(req.id)[0])
    world.session.commit()
    task = world.session.scalar(select(Assignment))
    client = world.app.test_client()
    sign_in(world, client, "13900007777")
    page = client.get("/me").get_data(as_text=True)
    assert 'name="outcome" value="needs_attention"' in page
    token = csrf_token(page)
    missing = client.post(f"/me/tasks/{task.id}/complete", data={"note": "", "csrf_token": token})
    assert missing.status_code == 422 and task.status == "active"
    done = client.post(f"/me/tasks/{task.id}/complete",
                       data={"note": "老人腿疼，想配个拐杖", "outcome": "needs_attention", "csrf_token": token})
    assert done.status_code == 303
    world.session.expire_all()
    [told] = world.events(contract.VISIT_OUTCOME)
    assert told == {"visit_ref": "visit:5", "outcome": "needs_attention", "note": "老人腿疼，想配个拐杖",
                    "actor": f"volunteer:{task.volunteer_id}"}
    contract.VisitOutcome().load(told)


def test_an_ordinary_task_is_completed_without_an_outcome_and_tells_the_community_nothing(world):
    register(world.app, phone="13900008888")
    req = world.receive(submitted(), utcnow())
    world.at(utcnow()).accept(world.offers(req.id)[0])
    world.session.commit()
    task = world.session.scalar(select(Assignment))
    client = world.app.test_client()
    sign_in(world, client, "13900008888")
    page = client.get("/me").get_data(as_text=True)
    assert 'name="outcome"' not in page
    assert client.post(f"/me/tasks/{task.id}/complete", data={"csrf_token": csrf_token(page)}).status_code == 303
    assert world.session.scalar(select(func.count()).select_from(MatchingOutbox).where(
        MatchingOutbox.task_name == contract.VISIT_OUTCOME)) == 0
