"""Matching: the engine's rule, dispatch (offer, accept, decline,
escalate) and the registry API, on SQLite and PostgreSQL."""
import uuid

import pytest
from sqlalchemy import func, select

from services.common import contract
from services.volunteers import dispatch, engine
from services.volunteers import tasks as matching_tasks
from services.volunteers.models import Assignment, Escalation, Leader, Offer, OutboxMessage, ServiceRequest, Volunteer
from tests.conftest import ADMIN_TOKEN, csrf_token

HOME = engine.Place("3", "1", "G1")


def vol(id, skills=("haircut",), place=HOME, capacity=1, active_tasks=0, active=True):
    return engine.VolunteerFacts(id, frozenset(skills), active, capacity, active_tasks, place)


def test_engine_filters_and_orders_by_nearness_then_load_then_id():
    req = engine.RequestFacts("haircut", HOME)
    volunteers = [
        vol(1, skills=("sharpening",)),                       # no skill
        vol(2, active=False),                                  # inactive
        vol(3, capacity=1, active_tasks=1),                    # full
        vol(4, place=engine.Place("40", "1", "G4")),            # same community
        vol(5, place=engine.Place("5", "2", "G1")),             # same grid
        vol(6, place=engine.Place("3", "2", "G1")),             # same building
        vol(7, capacity=2, active_tasks=1),                    # same stairwell, half busy
        vol(8),                                                 # same stairwell, free
        vol(9),                                                 # same stairwell, free, higher id
    ]
    ranked = engine.rank(req, volunteers)
    assert [c.volunteer_id for c in ranked] == [8, 9, 7, 6, 5, 4]
    assert ranked[0].reasons[0] == "same_stairwell"
    assert engine.rank(req, volunteers, exclude=frozenset({8, 9}))[0].volunteer_id == 7


def test_engine_is_deterministic():
    req = engine.RequestFacts("haircut", HOME)
    volunteers = [vol(i, place=engine.Place(str(i % 5), "1", f"G{i % 3}")) for i in range(1, 40)]
    assert engine.rank(req, volunteers) == engine.rank(req, list(reversed(volunteers)))


NEW_VOLUNTEER = {"name": "王建国", "phone": "13900001111", "building": "3", "unit": "1",
                 "skills": ["haircut"], "capacity": 1, "channels": ["json://127.0.0.1:9/hook"]}


@pytest.fixture
def matching(make_app, backend):
    return make_app("volunteers", backend=backend)


def register(app, **over):
    resp = app.test_client().post("/api/v1/volunteers", json={**NEW_VOLUNTEER, **over},
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert resp.status_code == 201, resp.json
    return resp.json["id"]


def test_registry_api_needs_the_staff_token_and_masks_secrets(matching):
    client = matching.test_client()
    assert client.post("/api/v1/volunteers", json=NEW_VOLUNTEER).status_code == 401
    vid = register(matching)
    assert client.get(f"/api/v1/volunteers/{vid}").status_code == 401
    got = client.get(f"/api/v1/volunteers/{vid}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json
    assert got["phone"] == "139****1111"
    assert got["channels"] == ["json://127.0.0.1:9/****"]
    assert got["skills"] == ["haircut"] and got["active_tasks"] == 0


@pytest.mark.parametrize("changes, field", [
    ({"skills": ["parking"]}, "skills"),          # staff-only: not a volunteer skill
    ({"skills": []}, "skills"),
    ({"phone": "110"}, "phone"),
    ({"building": "999"}, "building"),
    ({"unit": "9"}, "unit"),
    ({"capacity": 0}, "capacity"),
    ({"channels": ["not a url"]}, "channels"),
])
def test_registry_rejects_bad_input_field_by_field(matching, changes, field):
    resp = matching.test_client().post("/api/v1/volunteers", json={**NEW_VOLUNTEER, **changes},
                                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert resp.status_code == 422
    assert field in resp.json["errors"]["json"]
    with matching.app_context():
        assert matching.extensions["db"].Session.scalar(select(func.count()).select_from(Volunteer)) == 0


def submitted(category="haircut", building="3", unit="1"):
    return contract.envelope(contract.REQUEST_SUBMITTED, {
        "request_id": str(uuid.uuid4()), "category": category, "summary": "需要帮忙", "building": building,
        "unit": unit, "masked_phone": "138****1234", "mode": "home", "window_start": None, "window_end": None,
        "urgency": "normal"}, source="requests")


def receive(app, message):
    with app.app_context():
        return matching_tasks.request_submitted.apply(args=[message]).get()


def events(app, task_name):
    with app.app_context():
        rows = app.extensions["db"].Session.scalars(
            select(OutboxMessage).where(OutboxMessage.task_name == task_name).order_by(OutboxMessage.created_at))
        return [r.envelope["data"] for r in rows]


def test_a_request_is_offered_to_the_nearest_volunteer_once(matching):
    far = register(matching, building="40", unit="1")
    near = register(matching)
    message = submitted()
    assert receive(matching, message) == "done"
    assert receive(matching, message) == "duplicate"
    with matching.app_context():
        offers = matching.extensions["db"].Session.scalars(select(Offer)).all()
        assert [o.volunteer_id for o in offers] == [near]
    sends = events(matching, contract.NOTIFY_SEND)
    assert len(sends) == 1 and sends[0]["recipient"] == f"volunteer:{near}"
    assert sends[0]["context"]["masked_phone"] == "138****1234"
    assert "unit" not in sends[0]["context"]  # the building only, before acceptance
    assert sends[0]["context"]["offer_url"].startswith("http://127.0.0.1:8002/offers/")
    assert [e["status"] for e in events(matching, contract.STATUS_CHANGED)] == ["offered"]
    assert far != near


def test_staff_only_category_escalates_to_the_grid_leader(matching):
    register(matching)
    receive(matching, submitted(category="parking", building="3"))
    with matching.app_context():
        session = matching.extensions["db"].Session
        esc = session.scalar(select(Escalation))
        leader = session.get(Leader, esc.leader_id)
        assert (esc.reason, leader.role, leader.grid) == ("staff_only", "grid", "G1")
        assert session.scalar(select(func.count()).select_from(Offer)) == 0
    send = events(matching, contract.NOTIFY_SEND)[0]
    assert send["recipient"] == f"leader:{leader.id}" and send["template"] == "escalation" and send["urgent"]
    assert events(matching, contract.STATUS_CHANGED)[0]["status"] == "escalated"


def test_no_candidate_escalates_to_the_hallway_leader_of_the_stairwell(matching):
    receive(matching, submitted(category="bicycle_repair", building="7", unit="2"))
    with matching.app_context():
        session = matching.extensions["db"].Session
        leader = session.get(Leader, session.scalar(select(Escalation)).leader_id)
        assert (leader.role, leader.building, leader.unit) == ("hallway", "7", "2")


def offer_page_post(app, token, decision):
    client = app.test_client()
    page = client.get(f"/offers/{token}").get_data(as_text=True)
    return client.post(f"/offers/{token}", data={"decision": decision, "csrf_token": csrf_token(page)})


def only_offer(app):
    with app.app_context():
        return app.extensions["db"].Session.scalars(select(Offer).order_by(Offer.id)).all()


def test_accept_books_the_volunteer_once_and_tells_intake(matching):
    vid = register(matching, capacity=1)
    receive(matching, submitted())
    offer = only_offer(matching)[0]
    page = matching.test_client().get(f"/offers/{offer.token}").get_data(as_text=True)
    assert "138****1234" in page and "3幢" in page
    resp = offer_page_post(matching, offer.token, "accept")
    assert resp.status_code == 303 and "outcome=accepted" in resp.headers["Location"]
    with matching.app_context():  # accepting again (say, a double click) changes nothing
        session = matching.extensions["db"].Session
        assert dispatch.accept(session, matching.extensions["outbox"], session.get(Offer, offer.id)) == "closed"
    with matching.app_context():
        session = matching.extensions["db"].Session
        assert session.get(Volunteer, vid).active_tasks == 1
        assert session.scalar(select(func.count()).select_from(Assignment)) == 1
    assigned = [e for e in events(matching, contract.STATUS_CHANGED) if e["status"] == "assigned"]
    assert assigned == [{"request_id": offer.request_id, "status": "assigned", "actor": f"volunteer:{vid}",
                         "note": "", "volunteer_name": "王建国"}]
    # At capacity: a second request is not offered to them; nobody else → escalated.
    receive(matching, submitted())
    assert len(only_offer(matching)) == 1


def test_a_get_never_changes_an_offer(matching):
    register(matching)
    receive(matching, submitted())
    offer = only_offer(matching)[0]
    matching.test_client().get(f"/offers/{offer.token}?decision=accept")
    assert only_offer(matching)[0].status == "open"
    resp = matching.test_client().post(f"/offers/{offer.token}", data={"decision": "accept"})
    assert resp.status_code == 400  # no CSRF token
    assert only_offer(matching)[0].status == "open"


def test_decline_goes_to_the_next_candidate_then_escalates(matching):
    first = register(matching)
    second = register(matching, building="4", unit="1", phone="13900002222")
    receive(matching, submitted())
    assert offer_page_post(matching, only_offer(matching)[0].token, "decline").status_code == 303
    offers = only_offer(matching)
    assert [(o.volunteer_id, o.status) for o in offers] == [(first, "declined"), (second, "open")]
    offer_page_post(matching, offers[1].token, "decline")
    with matching.app_context():
        assert matching.extensions["db"].Session.scalar(select(Escalation)).reason == "no_candidate"
    with matching.app_context():
        req = matching.extensions["db"].Session.scalar(select(ServiceRequest))
        assert req.status == "escalated"


def test_accept_at_capacity_is_refused(matching):
    vid = register(matching, capacity=1)
    receive(matching, submitted())
    receive(matching, submitted(unit="2"))  # offered too: the volunteer is not yet booked
    first, second = only_offer(matching)
    assert "outcome=accepted" in offer_page_post(matching, first.token, "accept").headers["Location"]
    assert "outcome=full" in offer_page_post(matching, second.token, "accept").headers["Location"]
    with matching.app_context():
        assert matching.extensions["db"].Session.get(Volunteer, vid).active_tasks == 1
    assert only_offer(matching)[1].status == "open"
