"""Intake: the web form and the JSON API, on SQLite and PostgreSQL."""
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from services.common import contract
from services.requests.models import ContactAccess, OutboxMessage, ServiceRequest, StatusChange
from tests.conftest import ADMIN_TOKEN, REQUESTS_TOKEN, VOLUNTEERS_TOKEN, csrf_token
from tests.factories import RESIDENT, status_changed

BAD_CASES = {
    "missing category": ({"category": None}, "category"),
    "invalid phone": ({"contact_phone": "12345"}, "contact_phone"),
    "over-long description": ({"description": "修" * 1001}, "description"),
    "unknown building": ({"building": "999"}, "building"),
    "unknown unit": ({"unit": "9"}, "unit"),
    "no consent": ({"consent": False}, "consent"),
    "window ends before it starts": ({"window_start": "2099-01-02T10:00", "window_end": "2099-01-02T09:00"},
                                     "window_end"),
}


def with_changes(changes):
    data = dict(RESIDENT)
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return data


def counts(app):
    session = app.extensions["db"].Session
    with app.app_context():
        return tuple(session.scalar(select(func.count()).select_from(m))
                     for m in (ServiceRequest, StatusChange, OutboxMessage))


@pytest.fixture
def app(make_app, backend):
    return make_app("requests", backend=backend)


@pytest.mark.parametrize("case", BAD_CASES)
def test_api_rejects_bad_input_field_by_field_and_stores_nothing(app, case):
    changes, field = BAD_CASES[case]
    before = counts(app)
    resp = app.test_client().post("/api/v1/requests", json=with_changes(changes))
    assert resp.status_code == 422
    assert field in resp.json["errors"]["json"]
    assert counts(app) == before


@pytest.mark.parametrize("case", BAD_CASES)
def test_form_rerenders_with_a_message_next_to_the_bad_field_and_stores_nothing(app, client, case):
    changes, field = BAD_CASES[case]
    token = csrf_token(client.get("/").get_data(as_text=True))
    form = {k: ("true" if v is True else "" if v is False else v) for k, v in with_changes(changes).items()}
    before = counts(app)
    resp = client.post("/", data={**form, "csrf_token": token})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert f'id="{field}-error"' in html
    # What the resident typed is kept, so nothing has to be entered twice.
    assert RESIDENT["contact_name"] in html
    assert counts(app) == before


def test_form_errors_are_in_chinese_by_default_and_english_on_request(app, client):
    token = csrf_token(client.get("/").get_data(as_text=True))
    html = client.post("/", data={"csrf_token": token}).get_data(as_text=True)
    assert "请选择服务类别。" in html
    client.get("/?lang=en")  # the visible switch; remembered in a cookie
    token = csrf_token(client.get("/").get_data(as_text=True))
    html = client.post("/", data={"csrf_token": token}).get_data(as_text=True)
    assert "Choose a service category." in html


def test_form_without_csrf_token_is_refused(app):
    before = counts(app)
    resp = app.test_client().post("/", data={**RESIDENT, "consent": "true"})
    assert resp.status_code == 400
    assert counts(app) == before


def test_form_submission_stores_request_and_event_and_shows_tracking_page(app, client, unit_redis):
    token = csrf_token(client.get("/").get_data(as_text=True))
    resp = client.post("/", data={**RESIDENT, "consent": "true", "urgency": "urgent", "csrf_token": token,
                                  "window_start": "2099-03-01T09:00", "window_end": "2099-03-01T11:00"})
    assert resp.status_code == 303
    code = re.search(r"/track/([A-Z0-9]+)", resp.headers["Location"]).group(1)
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "已提交" in page and code[:4] in page
    assert RESIDENT["contact_phone"] not in page and RESIDENT["contact_name"] not in page

    session = app.extensions["db"].Session
    with app.app_context():
        req = session.scalar(select(ServiceRequest).where(ServiceRequest.tracking_code == code))
        assert req.urgency == "urgent" and req.channel == "web"
        # 09:00 in Hangzhou is 01:00 UTC.
        assert req.window_start.hour == 1 and req.window_start.utcoffset() == timedelta(0)
        event = session.scalar(select(OutboxMessage))
        assert event.published_at is not None  # relayed right after the commit
    # ...onto the matching service's queue, carrying no name, phone or room.
    raw = unit_redis.lindex("volunteers", 0)
    assert raw is not None
    body = json.loads(raw)["body"]
    # Ids and the digest are random hex, which can hold "302" by chance (it did once in CI).
    data = {k: v for k, v in event.envelope["data"].items() if k not in ("request_id", "requester_digest")}
    assert RESIDENT["contact_phone"] not in raw.decode() and RESIDENT["room"] not in json.dumps(data)
    assert event.envelope["data"]["masked_phone"] == "138****1234"
    assert body  # a Celery message with our envelope inside


def test_api_submission_and_tracking_without_personal_data(app, client):
    resp = client.post("/api/v1/requests", json={**RESIDENT, "contact_phone": " 138 1234 1234 "})
    assert resp.status_code == 201
    assert resp.json["status"] == "submitted"
    assert re.fullmatch(r"[A-HJ-NP-Z2-9]{12}", resp.json["tracking_code"])
    code = resp.json["tracking_code"]
    dashed = f"{code[:4]}-{code[4:8]}-{code[8:].lower()}"
    tracked = client.get(f"/api/v1/requests/{dashed}")
    assert tracked.status_code == 200
    text = tracked.get_data(as_text=True)
    for secret in (RESIDENT["contact_name"], "13812341234"):
        assert secret not in text
    # The room is no field's value (as text "302" may turn up in a timestamp's microseconds).
    texts = [v for v in tracked.json.values() if isinstance(v, str)]
    assert "room" not in tracked.json and RESIDENT["room"] not in texts
    assert [h["status"] for h in tracked.json["history"]] == ["submitted"]
    assert client.get("/api/v1/requests/AAAAAAAAAAAA").status_code == 404
    assert client.get("/track/AAAAAAAAAAAA").status_code == 404


def test_contact_is_only_for_matching_and_only_while_a_volunteer_is_on_it(app, client):
    request_id = client.post("/api/v1/requests", json=RESIDENT).json["id"]
    url = f"/api/v1/internal/requests/{request_id}/contact?reader=volunteer:7"
    matching = {"Authorization": f"Bearer {VOLUNTEERS_TOKEN}"}
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    # Not intake's own token, not even the admin token: matching alone shows contacts.
    for token in (REQUESTS_TOKEN, ADMIN_TOKEN):
        assert client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 403
    # Before anyone accepted, nobody gets it.
    assert client.get(url, headers=matching).status_code == 409
    apply_event(app, status_changed(request_id, "assigned"))
    resp = client.get(url, headers=matching)
    assert resp.status_code == 200
    assert resp.json["contact_phone"] == "13812341234" and resp.json["room"] == "302"
    # Once the work is done the contact is no longer given out.
    apply_event(app, status_changed(request_id, "completed"))
    assert client.get(url, headers=matching).status_code == 409
    with app.app_context():
        readers = app.extensions["db"].Session.scalars(select(ContactAccess.actor)).all()
    assert readers == ["volunteer:7"]  # one read, logged; the refused ones read nothing


def test_catalogue_endpoints(app, client):
    cats = client.get("/api/v1/categories").json
    assert {c["code"] for c in cats} == {c.code for c in contract.RESIDENT_CATEGORIES}
    assert next(c for c in cats if c["code"] == "parking") == {
        "code": "parking", "name_zh": "停车", "name_en": "Parking", "staff_only": True}
    buildings = client.get("/api/v1/buildings").json
    assert len(buildings) == 69
    assert buildings[0]["code"] == "1" and buildings[0]["units"] and buildings[0]["grid"] == "G1"


def test_health_and_readiness(app, client):
    assert client.get("/healthz").json["status"] == "ok"
    assert client.get("/readyz").json == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def apply_event(app, message):
    from services.requests import tasks
    with app.app_context():
        return tasks.status_changed.apply(args=[message]).get()


def outbox_events(app, task_name):
    with app.app_context():
        rows = app.extensions["db"].Session.scalars(
            select(OutboxMessage).where(OutboxMessage.task_name == task_name).order_by(OutboxMessage.created_at))
        return [r.envelope["data"] for r in rows]


def test_the_resident_cancels_with_the_tracking_code(app, client):
    created = client.post("/api/v1/requests", json=RESIDENT).json
    code, request_id = created["tracking_code"], created["id"]
    page = client.get(f"/track/{code}").get_data(as_text=True)
    resp = client.post(f"/track/{code}/cancel", data={"reason": "邻居帮我理了", "csrf_token": csrf_token(page)})
    assert resp.status_code == 303
    tracked = client.get(f"/api/v1/requests/{code}").json
    assert tracked["status"] == "cancelled" and tracked["history"][-1]["note"] == "邻居帮我理了"
    [event] = outbox_events(app, contract.REQUEST_CANCELLED)
    assert event == {"request_id": request_id, "actor": "resident", "reason": "邻居帮我理了"}
    # The contact is no longer given out, and a second cancel is refused.
    contact = client.get(f"/api/v1/internal/requests/{request_id}/contact",
                         headers={"Authorization": f"Bearer {VOLUNTEERS_TOKEN}"})
    assert contact.status_code == 410
    assert client.post(f"/api/v1/requests/{code}/cancel", json={}).status_code == 409


def test_station_appointment_and_completion_then_feedback_once(app, client):
    created = client.post("/api/v1/requests", json={**RESIDENT, "mode": "station"}).json
    code, request_id = created["tracking_code"], created["id"]
    apply_event(app, status_changed(request_id, "assigned",
                                     appointment_at=datetime(2026, 11, 28, 1, tzinfo=timezone.utc),
                                     place="翠邻里服务站（12幢一楼服务大厅）"))
    tracked = client.get(f"/api/v1/requests/{code}").json
    assert tracked["appointment_at"] == "2026-11-28T01:00:00+00:00" and tracked["place"].startswith("翠邻里")
    page = client.get(f"/track/{code}").get_data(as_text=True)
    assert "2026-11-28 09:00" in page and "翠邻里服务站" in page  # shown in Hangzhou time
    told = outbox_events(app, contract.NOTIFY_SEND)
    assert told[-1]["template"] == "assigned" and "周六" in told[-1]["context"]["appointment"]

    page = client.get(f"/track/{code}").get_data(as_text=True)
    too_early = client.post(f"/track/{code}/feedback", data={"rating": "5", "csrf_token": csrf_token(page)})
    assert too_early.status_code == 409
    apply_event(app, status_changed(request_id, "completed"))
    assert outbox_events(app, contract.NOTIFY_SEND)[-1]["template"] == "completed"
    page = client.get(f"/track/{code}").get_data(as_text=True)
    bad = client.post(f"/track/{code}/feedback", data={"rating": "9", "csrf_token": csrf_token(page)})
    assert bad.status_code == 422 and 'id="rating-error"' in bad.get_data(as_text=True)
    good = client.post(f"/track/{code}/feedback", data={"rating": "5", "thanks": "true", "comment": "谢谢",
                                                        "csrf_token": csrf_token(page)})
    assert good.status_code == 303
    [event] = outbox_events(app, contract.FEEDBACK_RECEIVED)
    assert event == {"request_id": request_id, "rating": 5, "thanks": True, "comment": "谢谢"}
    assert client.post(f"/api/v1/requests/{code}/feedback", json={"rating": 4}).status_code == 409
    assert client.get(f"/api/v1/requests/{code}").json["feedback_given"] is True


def test_priority_and_requester_digest_travel_with_the_request(app):
    app.test_client().post("/api/v1/requests", json={**RESIDENT, "elderly": True, "disability": True})
    [event] = outbox_events(app, contract.REQUEST_SUBMITTED)
    assert event["elderly"] is True and event["disability"] is True
    digest_key = app.config["PHONE_DIGEST_KEY"]
    assert event["requester_digest"] == contract.phone_digest(RESIDENT["contact_phone"], digest_key)
    assert RESIDENT["contact_phone"] not in json.dumps(event)
