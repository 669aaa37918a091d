"""Notification: templates, dedupe, deliveries through real local servers
(a webhook receiver and an SMTP server), retries, fallback, inbox."""
import pytest
from jinja2 import UndefinedError
from sqlalchemy import select

from services.common import contract
from services.notify import delivery, messages
from services.notify import tasks as notify_tasks
from services.notify.models import Delivery
from tests.conftest import ADMIN_TOKEN, SERVICE_TOKEN
from tests.receivers import SmtpReceiver, WebhookReceiver

CONTEXTS = {
    "offer": {"category": "haircut", "building": "3幢", "masked_phone": "138****1234",
              "summary": "理发", "window_start": "", "window_end": "", "offer_url": "http://x/offers/t"},
    "assigned": {"category": "haircut", "tracking_code": "ABCD", "volunteer_name": "王师傅",
                 "tracking_url": "http://x/track/ABCD", "appointment": "", "place": ""},
    "offer_withdrawn": {"category": "haircut", "building": "3幢", "reason": "taken"},
    "completed": {"category": "haircut", "tracking_code": "ABCD", "volunteer_name": "王师傅",
                  "tracking_url": "http://x/track/ABCD"},
    "magic_link": {"login_url": "http://x/login/t", "minutes": 30},
    "thanks": {"category": "haircut", "rating": 5, "thanks": True, "comment": "谢谢王师傅"},
    "escalation": {"category": "parking", "building": "3幢", "unit": "", "masked_phone": "138****1234",
                   "summary": "车位", "reason": "staff_only", "leader_name": "宋德明"},
}


@pytest.mark.parametrize("template", contract.TEMPLATES)
@pytest.mark.parametrize("language", contract.LANGUAGES)
def test_every_event_renders_in_both_languages(template, language):
    title, short, full = messages.render(template, language, CONTEXTS[template])
    assert title and short and full
    assert "{{" not in short + full
    if "category" in CONTEXTS[template]:
        name = contract.CATEGORY_BY_CODE[CONTEXTS[template]["category"]].name(language)
        assert name in short
    if language == "zh-CN":
        # An SMS in China is 70 characters; the link may run over.
        assert len(short.split("http")[0]) <= 70


def test_a_station_booking_tells_when_and_where():
    context = {**CONTEXTS["assigned"], "appointment": "11月28日 周六 09:00", "place": "翠邻里服务站（3幢一楼）"}
    title, short, full = messages.render("assigned", "zh-CN", context)
    assert "11月28日 周六 09:00" in short and "翠邻里服务站" in short and "翠邻里服务站" in full


def test_a_missing_context_value_fails_loudly():
    with pytest.raises(UndefinedError):
        messages.render("offer", "zh-CN", {"category": "haircut"})


@pytest.fixture
def notify_app(make_app, backend):
    return make_app("notify", backend=backend)


def send(app, recipient, channels, key="k1", template="offer", language="zh-CN"):
    message = contract.envelope(contract.NOTIFY_SEND, {
        "dedupe_key": key, "recipient": recipient, "channels": channels, "language": language,
        "template": template, "context": CONTEXTS[template], "urgent": False}, source="volunteers")
    with app.app_context():
        return notify_tasks.send.apply(args=[message]).get()


def deliveries(app):
    with app.app_context():
        return app.extensions["db"].Session.scalars(select(Delivery).order_by(Delivery.id)).all()


def test_delivery_to_a_webhook_and_dedupe(notify_app):
    with WebhookReceiver() as hook:
        assert send(notify_app, "volunteer:1", [hook.url()]) == "done"
        assert send(notify_app, "volunteer:1", [hook.url()]) == "done"  # same key, new envelope: a no-op
        assert len(hook.received) == 1
        assert "138****1234" in hook.received[0]["body"]["message"]
    [d] = deliveries(notify_app)
    assert (d.status, d.attempts, d.last_error) == ("sent", 1, None)


def test_email_gets_the_full_form(notify_app):
    with SmtpReceiver() as smtp:
        send(notify_app, "leader:1", [smtp.url("grid@example.org")], template="escalation")
        assert len(smtp.messages) == 1
        mail = smtp.messages[0]
        assert mail["To"] == "grid@example.org"
        body = mail.get_body().get_content()
        assert "宋德明您好" in body and "车位" in body


def test_failures_retry_then_fall_back_to_the_next_channel_then_die(notify_app, monkeypatch):
    monkeypatch.setattr(delivery, "RETRY_BASE_SECONDS", 0.0)  # retries due at once
    db = notify_app.extensions["db"]
    with WebhookReceiver() as bad, WebhookReceiver() as good:
        bad.status = 500
        send(notify_app, "volunteer:2", [bad.url("/first"), good.url("/second")])
        [d] = deliveries(notify_app)
        assert (d.status, d.attempts, d.channel_index) == ("failed", 1, 0)
        for _ in range(delivery.ATTEMPTS_PER_CHANNEL - 1):
            delivery.attempt(db, d.id)
        [d] = deliveries(notify_app)
        assert (d.status, d.channel_index) == ("failed", 1)
        assert len(bad.received) == delivery.ATTEMPTS_PER_CHANNEL and not good.received
        delivery.attempt(db, d.id)
        [d] = deliveries(notify_app)
        assert d.status == "sent" and len(good.received) == 1

        send(notify_app, "volunteer:3", [bad.url()], key="k2")
        for _ in range(delivery.ATTEMPTS_PER_CHANNEL - 1):
            with notify_app.app_context():
                assert notify_tasks.retry_deliveries.apply().get() == 1  # the beat sweep
        d = deliveries(notify_app)[-1]
        assert (d.status, d.attempts) == ("dead", delivery.ATTEMPTS_PER_CHANNEL)
        assert d.last_error


def test_a_delivery_is_not_sent_twice_when_claimed(notify_app):
    with WebhookReceiver() as hook:
        send(notify_app, "volunteer:4", [hook.url()])
        [d] = deliveries(notify_app)
        # Already sent: a second attempt (say, a redelivered task) does nothing.
        assert delivery.attempt(notify_app.extensions["db"], d.id) is None
        assert len(hook.received) == 1


def test_every_message_lands_in_the_inbox_even_without_channels(notify_app):
    send(notify_app, "resident:abc", None, template="assigned")
    assert deliveries(notify_app) == []
    client = notify_app.test_client()
    assert client.get("/api/v1/inbox/resident:abc").status_code == 401
    inbox = client.get("/api/v1/inbox/resident:abc", headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}).json
    assert len(inbox) == 1 and "王师傅" in inbox[0]["body"] and inbox[0]["read"] is False


def test_delivery_log_masks_channel_urls(notify_app):
    with WebhookReceiver() as hook:
        send(notify_app, "volunteer:5", [hook.url("/secret-path?token=abc")])
    client = notify_app.test_client()
    assert client.get("/api/v1/deliveries").status_code == 401
    resp = client.get("/api/v1/deliveries?recipient=volunteer:5", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    [row] = resp.json
    assert row["channel"] == f"json://127.0.0.1:{hook.port}/****" and row["status"] == "sent"
    assert "secret-path" not in resp.get_data(as_text=True)
    bad = client.get("/api/v1/deliveries?status=lost", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert bad.status_code == 422 and "status" in bad.json["errors"]["query"]
