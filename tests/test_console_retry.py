"""The office tries again, from the request's page, a message to the
resident that every channel refused: a task to notify, only for this
request's own deliveries and only when the delivery is dead."""
from __future__ import annotations

from sqlalchemy import select

from services.common import contract
from services.notify import delivery
from services.notify import tasks as notify_tasks
from services.notify.models import Delivery, Notification
from services.requests.models import OutboxMessage, ServiceRequest
from tests.conftest import csrf_token
from tests.factories import add_staff, resident_request, service_reads, staff_sign_in
from tests.receivers import WebhookReceiver


def _dead_delivery(notify, recipient: str, hook, key: str) -> int:
    message = contract.envelope(contract.NOTIFY_SEND, {
        "dedupe_key": key, "recipient": recipient, "channels": [hook.url("/r")], "language": "zh-CN",
        "template": "completed", "context": {"tracking_code": "ABCDEFGHJKLM", "category": "haircut",
                                             "volunteer_name": "王建国", "tracking_url": "http://x/track/A"},
        "urgent": True, "reply_to": None}, source="requests")  # urgent: quiet hours hold nothing
    with notify.app_context():
        notify_tasks.send.apply(args=[message]).get()
        for _ in range(delivery.ATTEMPTS_PER_CHANNEL - 1):
            notify_tasks.retry_deliveries.apply().get()
        s = notify.extensions["db"].Session
        row = s.scalar(select(Delivery).join(Notification).where(
            Notification.dedupe_key == key))
        assert row.status == "dead"
        return row.id


def test_the_office_tries_a_dead_message_again_from_the_requests_page(make_app, monkeypatch):
    monkeypatch.setattr(delivery, "RETRY_BASE_SECONDS", 0.0)
    intake = make_app("requests", setup=add_staff)
    notify = make_app("notify", CHANNEL_TIMEOUT=0.5)
    service_reads(monkeypatch, intake, notify=notify)
    created = intake.test_client().post("/api/v1/requests", json=resident_request())
    assert created.status_code == 201, created.text
    with intake.app_context():
        req_id = intake.extensions["db"].Session.scalar(select(ServiceRequest.id))
    with WebhookReceiver() as hook:
        hook.status = 500
        mine = _dead_delivery(notify, f"resident:{req_id}", hook, "completed:mine")
        other = _dead_delivery(notify, "resident:someone-else", hook, "completed:other")
    client, _ = staff_sign_in(intake, "admin")
    page = client.get(f"/staff/requests/{req_id}")
    assert f'deliveries/{mine}/retry' in page.text and f'deliveries/{other}/retry' not in page.text
    token = csrf_token(page.text)
    assert client.post(f"/staff/requests/{req_id}/deliveries/{other}/retry",
                       data={"csrf_token": token}).status_code == 404
    done = client.post(f"/staff/requests/{req_id}/deliveries/{mine}/retry", data={"csrf_token": token})
    assert done.status_code == 303 and "done=retry" in done.headers["Location"]
    with intake.app_context():
        sent = [r.envelope["data"] for r in intake.extensions["db"].Session.scalars(
            select(OutboxMessage).where(OutboxMessage.task_name == contract.DELIVERY_RETRY))]
    assert sent == [{"delivery_id": mine, "actor": "staff:1"}]
