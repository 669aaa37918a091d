"""Residents hear back only if they asked to (their own opt-in, not the
privacy consent): by SMS to a mobile, or a call for what matters; every
message to them also stays in the tracking page's inbox; they stop it with
one button (退订); staff extending or closing their request tells them too."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from services.common import contract
from services.notify import messages as notify_messages
from services.requests.models import OutboxMessage, ServiceRequest
from tests.conftest import csrf_token
from tests.factories import add_staff, resident_request, staff_sign_in, status_changed
from tests.test_programme_requests import programme_request


@pytest.fixture
def app(make_app):
    return make_app("requests", setup=add_staff)


def consume(app, message):
    with app.app_context():
        return app.extensions["celery"].tasks[message["type"]].apply(args=[message]).get()


def told(app) -> list[dict]:
    with app.app_context():
        return [r.envelope["data"] for r in app.extensions["db"].Session.scalars(
            select(OutboxMessage).where(OutboxMessage.task_name == contract.NOTIFY_SEND)
            .order_by(OutboxMessage.created_at))]


def submit(app, **changes) -> str:
    resp = app.test_client().post("/api/v1/requests", json=resident_request(**changes))
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


@pytest.mark.parametrize("messages, phone, channels", [
    ("none", "13812341234", []),
    ("text", "13812341234", ["sms://13812341234"]),
    ("call", "13812341234", ["voice://13812341234", "sms://13812341234"]),
    ("text", "0571-88881234", []),  # a landline takes no text message
    ("call", "0571-88881234", ["voice://057188881234"]),
])
def test_the_resident_is_told_only_where_they_asked(app, messages, phone, channels):
    request_id = submit(app, messages=messages, contact_phone=phone)
    consume(app, status_changed(request_id, "assigned"))
    [note] = told(app)
    assert (note["template"], note["recipient"], note["channels"]) == ("assigned", f"resident:{request_id}", channels)
    assert note["context"]["volunteer_name"] == "王建国"
    contract.NotificationRequested().load(note)  # notify takes these channels


def test_a_bad_choice_is_a_field_error_and_nothing_is_stored(app):
    resp = app.test_client().post("/api/v1/requests", json=resident_request(messages="wechat"))
    assert resp.status_code == 422 and set(resp.json["errors"]["json"]) == {"messages"}
    with app.app_context():
        assert app.extensions["db"].Session.scalar(select(ServiceRequest.id)) is None


def test_the_web_form_asks_and_the_tracking_page_stops_messages(app):
    client = app.test_client()
    form = client.get("/")
    assert 'name="messages" value="none" checked' in form.text  # nobody is messaged unless they ask
    sent = client.post("/", data={**resident_request(messages="text"), "consent": "true",
                                  "csrf_token": csrf_token(form.text)})
    assert sent.status_code == 303
    with app.app_context():
        req = app.extensions["db"].Session.scalar(select(ServiceRequest))
        code, request_id = req.tracking_code, req.id
        assert req.messages == "text"
    page = client.get(f"/track/{code}")
    assert 'id="stop-messages"' in page.text
    stopped = client.post(f"/track/{code}/stop-messages", data={"csrf_token": csrf_token(page.text)})
    assert stopped.status_code == 303
    assert 'id="stop-messages"' not in client.get(stopped.headers["Location"]).text
    consume(app, status_changed(request_id, "assigned"))
    assert told(app)[-1]["channels"] == []  # the inbox only
    with app.app_context():
        req = app.extensions["db"].Session.get(ServiceRequest, request_id)
        assert [h.event for h in req.history if h.event] == ["messages_stopped"]


def test_staff_extending_or_closing_tells_the_resident(app):
    request_id = submit(app, messages="text")
    client, _ = staff_sign_in(app, "admin")
    page = client.get(f"/staff/requests/{request_id}")
    token = csrf_token(page.text)
    assert client.post(f"/staff/requests/{request_id}/extend", data={
        "working_days": "3", "note": "需要等配件", "csrf_token": token}).status_code in (200, 303)
    assert client.post(f"/staff/requests/{request_id}/close", data={
        "note": "电话里已解决", "csrf_token": token}).status_code in (200, 303)
    extended, closed = [n for n in told(app) if n["template"] in ("extended", "closed")]
    assert extended["context"]["days"] == 3 and extended["context"]["why"] == "需要等配件"
    assert extended["channels"] == ["sms://13812341234"] and closed["dedupe_key"] == f"closed:{request_id}"
    for note in (extended, closed):  # as notify renders them
        _, short, _ = notify_messages.render(note["template"], "zh-CN", note["context"])
        assert "理发" in short and note["context"]["tracking_url"] in short


def test_a_programmes_visit_tells_the_resident_nothing(app):
    consume(app, programme_request())
    with app.app_context():
        request_id = app.extensions["db"].Session.scalar(select(ServiceRequest.id))
    consume(app, status_changed(request_id, "assigned"))
    assert told(app) == []
