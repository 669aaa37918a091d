"""Notification: templates, channels through real local servers (an SMTP
server, and HTTP receivers imitating a WeCom bot, a DingTalk robot, a
Feishu bot and an SMS gateway), retries, fallback, dead letters reported
back, quiet hours with a controllable clock, dedupe, the staff API."""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest
from jinja2 import UndefinedError
from marshmallow import ValidationError
from sqlalchemy import func, select, update

from services.common import contract
from services.common.clock import SHANGHAI, SetClock
from services.notify import delivery, messages
from services.notify import tasks as notify_tasks
from services.notify.models import Delivery, Notification, OutboxMessage, Recipient
from tests.conftest import ADMIN_TOKEN, REQUESTS_TOKEN, VOLUNTEERS_TOKEN
from tests.factories import console_for
from tests.receivers import SmtpReceiver, WebhookReceiver

STAFF = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CONTEXTS = {
    "offer": {"category": "haircut", "building": "3幢", "masked_phone": "138****1234",
              "summary": "理发", "window_start": "", "window_end": "", "offer_url": "http://x/offers/t"},
    "assigned": {"category": "haircut", "tracking_code": "ABCD", "volunteer_name": "王师傅",
                 "tracking_url": "http://x/track/ABCD", "appointment": "", "place": ""},
    "offer_withdrawn": {"category": "haircut", "building": "3幢", "reason": "taken"},
    "reminder": {"category": "haircut", "building": "3幢", "due": "11-28 10:00", "portal_url": "http://x/me"},
    "completed": {"category": "haircut", "tracking_code": "ABCD", "volunteer_name": "王师傅",
                  "tracking_url": "http://x/track/ABCD"},
    "escalation": {"category": "parking", "building": "3幢", "unit": "", "masked_phone": "138****1234",
                   "summary": "车位", "reason": "staff_only", "leader_name": "宋德明"},
    "magic_link": {"login_url": "http://x/login/t", "minutes": 30},
    "thanks": {"category": "haircut", "rating": 5, "thanks": True, "comment": "谢谢王师傅"},
    "digest": {"leader_name": "宋德明", "grid_name": "第1网格", "open": 3, "overdue": 1, "escalated": 1,
               "items": ["3幢 停车（escalated）"]},
    "follow_up": {"category": "haircut", "tracking_code": "ABCD", "tracking_url": "http://x/track/ABCD"},
    "extended": {"category": "lift_retrofit", "tracking_code": "ABCD", "tracking_url": "http://x/track/ABCD",
                 "days": 10, "due": "12月18日", "why": "等待施工队进场"},
    "closed": {"category": "parking", "tracking_code": "ABCD", "tracking_url": "http://x/track/ABCD"},
    "checkin": {"office_phone": "0571-88001234"},
}
# 22:30 and 07:01 in Hangzhou.
LATE = datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc)
MORNING = datetime(2026, 11, 27, 23, 1, tzinfo=timezone.utc)
NOON = datetime(2026, 11, 27, 4, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("template", contract.TEMPLATES)
@pytest.mark.parametrize("language", contract.LANGUAGES)
def test_every_event_renders_in_both_languages(template, language):
    title, short, full = messages.render(template, language, CONTEXTS[template])
    assert title and short and full
    assert "{{" not in short + full
    if "category" in CONTEXTS[template]:
        assert contract.CATEGORY_BY_CODE[CONTEXTS[template]["category"]].name(language) in short
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


def test_templates_run_in_a_sandbox():
    """A plain Jinja environment renders "(<class 'str'>, <class 'object'>)"
    here; the sandbox refuses to reach into Python internals."""
    from jinja2.exceptions import SecurityError
    template = messages.ENV.from_string("{{ x.__class__.__mro__ }}")
    with pytest.raises(SecurityError):
        template.render(x="")
    assert messages.ENV.from_string("{{ x.upper() }}").render(x="ok") == "OK"  # ordinary use still works


@pytest.fixture
def clock():
    return SetClock(NOON)


@pytest.fixture
def app(make_app, backend, monkeypatch, clock):
    monkeypatch.setattr(delivery, "RETRY_BASE_SECONDS", 0.0)  # retries due at once
    return make_app("notify", backend=backend, clock=clock, CHANNEL_TIMEOUT=0.5)


@pytest.fixture
def bots(app):
    """One local server that imitates the WeCom, DingTalk and Feishu bot APIs."""
    with WebhookReceiver() as bot:
        bot.answer = {"errcode": 0, "errmsg": "ok"}
        bot.routes["/open-apis/"] = (200, {"code": 0, "msg": "success"}, 0)
        app.config["CHANNEL_BASE_URLS"] = {name: bot.base for name in ("WECOM", "DINGTALK", "FEISHU", "LARK")}
        yield bot


def send(app, recipient, channels, key="k1", template="offer", language="zh-CN", urgent=False, reply_to=None):
    message = contract.envelope(contract.NOTIFY_SEND, {
        "dedupe_key": key, "recipient": recipient, "channels": channels, "language": language,
        "template": template, "context": CONTEXTS[template], "urgent": urgent, "reply_to": reply_to},
        source="volunteers")
    with app.app_context():
        return notify_tasks.send.apply(args=[message]).get()


def deliveries(app):
    with app.extensions["db"].Session.session_factory() as s:
        return s.scalars(select(Delivery).order_by(Delivery.id)).all()


def retry_sweep(app):
    with app.app_context():
        return notify_tasks.retry_deliveries.apply().get()


def test_wecom_bot_dingtalk_and_feishu_take_messages_and_are_read_by_their_answer(app, bots):
    send(app, "volunteer:1", ["wecombot://KEY-123"], key="a")
    send(app, "volunteer:2", ["dingtalk://SEC-456@TOKEN-789"], key="b")
    send(app, "volunteer:3", ["feishu://HOOK-abc"], key="c")
    assert [d.status for d in deliveries(app)] == ["sent", "sent", "sent"]
    wecom, ding, feishu = bots.received
    assert wecom["path"] == "/cgi-bin/webhook/send" and wecom["query"]["key"] == ["KEY-123"]
    assert wecom["body"]["msgtype"] == "text" and "138****1234" in wecom["body"]["text"]["content"]
    assert ding["path"] == "/robot/send" and ding["query"]["access_token"] == ["TOKEN-789"]
    timestamp = ding["query"]["timestamp"][0]
    expected = base64.b64encode(hmac.new(b"SEC-456", f"{timestamp}\nSEC-456".encode(), hashlib.sha256).digest())
    assert ding["query"]["sign"] == [expected.decode()]
    assert feishu["path"] == "/open-apis/bot/v2/hook/HOOK-abc" and feishu["body"]["msg_type"] == "text"


def test_200_with_an_error_code_is_a_failure_retried_then_the_next_channel(app, bots):
    bots.routes["/cgi-bin/"] = (200, {"errcode": 93000, "errmsg": "invalid webhook url"}, 0)
    send(app, "volunteer:1", ["wecombot://BAD", "feishu://GOOD"])
    [d] = deliveries(app)
    assert (d.status, d.attempts, d.channel_index) == ("failed", 1, 0)
    assert d.last_error.startswith("rejected: errcode=93000")
    for _ in range(delivery.ATTEMPTS_PER_CHANNEL - 1):
        retry_sweep(app)
    [d] = deliveries(app)
    assert (d.status, d.channel_index) == ("failed", 1)
    retry_sweep(app)
    [d] = deliveries(app)
    assert d.status == "sent" and d.attempts == delivery.ATTEMPTS_PER_CHANNEL + 1
    paths = [r["path"] for r in bots.received]
    assert paths.count("/cgi-bin/webhook/send") == 3 and paths[-1].startswith("/open-apis/")


@pytest.mark.parametrize("route, answer", [
    ("/robot/", (200, {"errcode": 310000, "errmsg": "sign not match"}, 0)),
    ("/open-apis/", (200, {"code": 19021, "msg": "sign match fail"}, 0)),
    ("/cgi-bin/", (500, {"errcode": -1}, 0)),
    ("/cgi-bin/", (200, {"errcode": 0}, 2.0)),  # hangs past the 0.5 s time-out
])
def test_rejections_errors_and_time_outs_end_dead_and_the_sender_is_told(app, bots, route, answer):
    bots.routes[route] = answer
    channel = {"/robot/": "dingtalk://T", "/open-apis/": "feishu://T", "/cgi-bin/": "wecombot://T"}[route]
    send(app, "volunteer:1", [channel], reply_to="volunteers")
    for _ in range(delivery.ATTEMPTS_PER_CHANNEL - 1):
        retry_sweep(app)
    [d] = deliveries(app)
    assert (d.status, d.attempts) == ("dead", delivery.ATTEMPTS_PER_CHANNEL)
    expected = {200: "rejected" if answer[2] == 0 else "timed out", 500: "HTTP 500"}[answer[0]]
    assert d.last_error.startswith(expected)
    with app.extensions["db"].Session.session_factory() as s:
        [event] = s.scalars(select(OutboxMessage)).all()
    assert event.task_name == contract.DELIVERY_FAILED
    assert event.envelope["data"]["dedupe_key"] == "k1" and event.envelope["data"]["template"] == "offer"


def test_sms_gateway_and_email(app):
    with WebhookReceiver() as gateway, SmtpReceiver() as smtp:
        send(app, "resident:r1", [gateway.url("/sms?to=13812341234")], key="sms", template="completed")
        send(app, "leader:1", [smtp.url("grid@example.org")], key="mail", template="escalation")
        [sms] = gateway.received
        assert "王师傅" in sms["body"]["message"] and sms["headers"]["X-Linli-Dedupe-Key"] == "sms"
        [mail] = smtp.messages
        assert mail["To"] == "grid@example.org" and "宋德明您好" in mail.get_body().get_content()
        gateway.status = 500
        send(app, "resident:r2", [gateway.url("/sms")], key="sms2", template="completed")
        assert deliveries(app)[-1].last_error == "channel refused or unreachable"


def test_quiet_hours_hold_ordinary_messages_until_morning_but_not_urgent_ones(app, clock):
    clock.at = LATE
    with WebhookReceiver() as hook:
        send(app, "volunteer:1", [hook.url("/ordinary")], key="ordinary")
        send(app, "volunteer:1", [hook.url("/urgent")], key="urgent", urgent=True)
        # An escalation is as urgent as its request (matching says which).
        send(app, "leader:1", [hook.url("/escalation")], key="esc", template="escalation", urgent=True)
        send(app, "leader:1", [hook.url("/escalation-ordinary")], key="esc2", template="escalation")
        assert sorted(r["path"] for r in hook.received) == ["/escalation", "/urgent"]
        held = deliveries(app)[0]
        assert held.status == "queued"
        assert held.next_attempt_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") == "2026-11-28 07:00"
        # The inbox has it at once: only the outside channel waits.
        inbox = app.test_client().get("/api/v1/inbox/volunteer:1",
                                             headers={"Authorization": f"Bearer {VOLUNTEERS_TOKEN}"}).json
        assert len(inbox) == 2
        clock.at = LATE + timedelta(hours=2)
        assert retry_sweep(app) == 0
        clock.at = MORNING
        assert retry_sweep(app) == 2
        assert sorted(r["path"] for r in hook.received[2:]) == ["/escalation-ordinary", "/ordinary"]


def test_quiet_hours_are_a_preference(app, client, clock):
    resp = client.put("/api/v1/recipients/volunteer:9/preferences", headers=STAFF,
                      json={"quiet_start": "12:00", "quiet_end": "13:00", "language": "en",
                            "channels": ["wecombot://SECRET"]})
    assert resp.status_code == 200
    assert resp.json == {"key": "volunteer:9", "language": "en", "quiet_start": "12:00", "quiet_end": "13:00",
                         "channels": ["wecombot://****"], "sms_opt_out": False}
    assert client.put("/api/v1/recipients/volunteer:9/preferences", headers=STAFF,
                      json={"quiet_start": "12:00"}).status_code == 422
    clock.at = NOON.replace(hour=4, minute=30)  # 12:30 in Hangzhou
    with WebhookReceiver() as hook:
        send(app, "volunteer:9", [hook.url()])
        assert hook.received == []
    assert deliveries(app)[0].next_attempt_at.astimezone(SHANGHAI).hour == 13


def test_new_recipients_start_with_the_communitys_quiet_hours(make_app, backend, monkeypatch, clock):
    monkeypatch.setenv("LINLI_QUIET_HOURS", "22:30-06:30")
    app = make_app("notify", backend=backend, clock=clock)
    clock.at = LATE  # 22:30 in Hangzhou: just inside
    with WebhookReceiver() as hook:
        send(app, "volunteer:5", [hook.url()])
        assert hook.received == []
    assert deliveries(app)[0].next_attempt_at.astimezone(SHANGHAI).strftime("%H:%M") == "06:30"
    prefs = app.test_client().get("/api/v1/recipients/volunteer:5/preferences", headers=STAFF).json
    assert (prefs["quiet_start"], prefs["quiet_end"]) == ("22:30", "06:30")
    # Equal ends: no quiet hours (what the system tests use, so they pass at any hour).
    monkeypatch.setenv("LINLI_QUIET_HOURS", "00:00-00:00")
    with WebhookReceiver() as hook:
        send(make_app("notify", backend=backend), "volunteer:6", [hook.url()], key="k2")
        assert len(hook.received) == 1


def test_the_same_key_delivers_once_even_when_sent_concurrently(app):
    with WebhookReceiver() as hook:
        barrier = threading.Barrier(6)
        outcomes = []

        def one():
            barrier.wait()
            outcomes.append(send(app, "volunteer:1", [hook.url()], key="same"))

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(outcomes) == 6
        with app.extensions["db"].Session.session_factory() as s:
            assert s.scalar(select(func.count()).select_from(Notification)) == 1
        assert len(deliveries(app)) == 1
        assert len(hook.received) == 1


def test_a_delivery_is_not_sent_twice_when_claimed(app):
    with WebhookReceiver() as hook:
        send(app, "volunteer:4", [hook.url()])
        [d] = deliveries(app)
        ext = app.extensions
        assert delivery.attempt(ext["db"], ext["outbox"], app.config, d.id) is None
        assert len(hook.received) == 1


def test_inbox_read_and_unread(app, client):
    send(app, "resident:abc", None, template="assigned")
    auth = {"Authorization": f"Bearer {REQUESTS_TOKEN}"}
    assert client.get("/api/v1/inbox/resident:abc").status_code == 401
    # A resident's inbox is intake's to show; matching's token does not open it.
    matching = {"Authorization": f"Bearer {VOLUNTEERS_TOKEN}"}
    assert client.get("/api/v1/inbox/resident:abc", headers=matching).status_code == 403
    assert client.post("/api/v1/inbox/resident:abc/1/read", headers=matching).status_code == 403
    [message] = client.get("/api/v1/inbox/resident:abc", headers=auth).json
    assert "王师傅" in message["body"] and message["read"] is False
    assert client.post(f"/api/v1/inbox/resident:other/{message['id']}/read", headers=auth).status_code == 404
    assert client.post(f"/api/v1/inbox/resident:abc/{message['id']}/read", headers=auth).json["read"] is True


def test_staff_api_log_retry_preview_and_test_message(app, client, caplog):
    with WebhookReceiver() as hook:
        hook.status = 500
        secret = hook.url("/secret-path?token=abc")
        send(app, "volunteer:5", [secret])
        for _ in range(delivery.ATTEMPTS_PER_CHANNEL - 1):
            retry_sweep(app)
        # The staff console (intake) reads the log for a signed-in staff member
        # (intake's token and their claims); only staff automation retries.
        service_only = {"Authorization": f"Bearer {REQUESTS_TOKEN}"}
        console = console_for(app, "grid_leader", grid="G1")
        matching = {"Authorization": f"Bearer {VOLUNTEERS_TOKEN}"}
        assert client.get("/api/v1/deliveries?status=dead", headers=matching).status_code == 403
        assert client.get("/api/v1/deliveries?status=dead", headers=service_only).status_code == 401
        [row] = client.get("/api/v1/deliveries?status=dead", headers=console).json
        assert client.post(f"/api/v1/deliveries/{row['id']}/retry", headers=console).status_code == 403
        assert client.get("/api/v1/deliveries?key=offer:1&key=offer:2", headers=STAFF).json == []
        assert client.get(f"/api/v1/deliveries?key={row['dedupe_key']}", headers=STAFF).json == [row]
        assert row["channel"] == f"json://127.0.0.1:{hook.port}/****" and row["attempts"] == 3
        assert client.get("/api/v1/deliveries?since=2099-01-01T00:00:00Z", headers=STAFF).json == []
        hook.status = 200
        retried = client.post(f"/api/v1/deliveries/{row['id']}/retry", headers=STAFF)
        assert retried.status_code == 200 and retried.json["status"] == "sent"
        assert client.post(f"/api/v1/deliveries/{row['id']}/retry", headers=STAFF).status_code == 409
        tested = client.post("/api/v1/test-message", headers=STAFF, json={"channel": hook.url("/t")}).json
        assert tested["sent"] is True and hook.received[-1]["path"] == "/t"
        assert hook.received[-1]["body"]["message"] == "邻里测试消息：这个渠道可以收到通知。"  # zh-CN by default
        assert client.post("/api/v1/test-message", headers=STAFF, json={"channel": "nope"}).status_code == 422
    preview = client.post("/api/v1/templates/preview", headers=STAFF,
                          json={"template": "offer", "context": CONTEXTS["offer"]}).json
    assert "3幢" in preview["short"] and preview["short_length"] == len(preview["short"])
    bad = client.post("/api/v1/templates/preview", headers=STAFF, json={"template": "offer", "context": {}})
    assert bad.status_code == 422 and "context" in bad.json["errors"]["json"]
    # Celery's own trace of an in-process apply() shows the raw arguments;
    # real workers log only the envelope id (argsrepr, see the end-to-end log scan).
    records = [r for r in caplog.records if r.name != "celery.app.trace"]
    assert any(r.getMessage() == "delivery attempt" for r in records)  # the log was captured: the scan means something
    text = "\n".join(r.getMessage() + str(r.__dict__) for r in records)
    assert "secret-path" not in text and "token=abc" not in text


def test_every_message_lands_in_the_inbox_even_without_channels(app):
    send(app, "resident:abc", None, template="assigned")
    assert deliveries(app) == []


def test_apprise_logs_stay_quiet(app):
    assert logging.getLogger("apprise").getEffectiveLevel() >= logging.WARNING


def test_marking_the_inbox_read_arrives_as_a_task(app):
    send(app, "volunteer:7", None, key="x1")
    send(app, "volunteer:7", None, key="x2")
    auth = {"Authorization": f"Bearer {VOLUNTEERS_TOKEN}"}
    assert app.test_client().get("/api/v1/inbox/volunteer:7", headers={
        "Authorization": f"Bearer {REQUESTS_TOKEN}"}).status_code == 403
    newest, oldest = app.test_client().get("/api/v1/inbox/volunteer:7", headers=auth).json
    message = contract.envelope(contract.INBOX_READ, {"recipient": "volunteer:7", "up_to_id": oldest["id"]},
                                source="volunteers")
    with app.app_context():
        assert notify_tasks.inbox_read.apply(args=[message]).get() == "done"
    newest, oldest = app.test_client().get("/api/v1/inbox/volunteer:7", headers=auth).json
    assert (newest["read"], oldest["read"]) == (False, True)


def test_a_residents_html_reaches_email_as_text_never_as_markup(app):
    """The summary is what a resident typed: in an email it must stay text."""
    typed = '<a href="http://evil.example/">点这里领取补贴</a><img src=x onerror=alert(1)>'
    context = {**CONTEXTS["escalation"], "summary": typed}
    message = contract.envelope(contract.NOTIFY_SEND, {
        "dedupe_key": "html", "recipient": "leader:1", "channels": None, "language": "zh-CN",
        "template": "escalation", "context": context, "urgent": True}, source="volunteers")
    with SmtpReceiver() as smtp:
        message["data"]["channels"] = [smtp.url("grid@example.org")]
        with app.app_context():
            notify_tasks.send.apply(args=[message]).get()
        [mail] = smtp.messages
    parts = [part for part in mail.walk() if not part.is_multipart()]
    html = [p.get_content() for p in parts if p.get_content_type() == "text/html"]
    text = [p.get_content() for p in parts if p.get_content_type() == "text/plain"]
    # Either plain text only, or HTML where the resident's tags are escaped.
    assert text or html
    for body in html:
        assert "<a href" not in body and "<img" not in body and "&lt;a href" in body
    for body in text:
        assert typed in body


@pytest.mark.parametrize("template, link", [("magic_link", "http://x/login/t"), ("offer", "http://x/offers/t")])
def test_a_link_that_is_a_key_never_shows_in_the_inbox_and_is_not_kept_once_sent(app, clock, template, link):
    """Sign-in and offer links reach the volunteer's channel; a look at the
    inbox or at the database gives no working link."""
    auth = {"Authorization": f"Bearer {VOLUNTEERS_TOKEN}"}

    def stored(key):
        with app.extensions["db"].Session.session_factory() as s:
            note = s.scalar(select(Notification).where(Notification.dedupe_key == key))
            keyed = [(d.keyed_short or "") + (d.keyed_full or "") for d in note.deliveries]
            return note.short_body + note.full_body + "".join(keyed)

    with WebhookReceiver() as hook:
        hook.status = 500  # first the channel fails: the link waits on the delivery, not in the inbox
        send(app, "volunteer:3", [hook.url("/v3")], key="k:1", template=template, urgent=True)
        [message] = app.test_client().get("/api/v1/inbox/volunteer:3", headers=auth).json
        assert link not in message["body"] and "已发送到您的消息渠道" in message["body"]
        with app.extensions["db"].Session.session_factory() as s:
            note = s.scalar(select(Notification).where(Notification.dedupe_key == "k:1"))
            assert link not in note.short_body + note.full_body
        hook.status = 200
        for _ in range(delivery.ATTEMPTS_PER_CHANNEL):
            with app.extensions["db"].Session.session_factory() as s:
                s.execute(update(Delivery).values(next_attempt_at=clock.now()))
                s.commit()
            retry_sweep(app)
        assert link in hook.received[-1]["body"]["message"]  # the channel got the link
    assert link not in stored("k:1")  # and once sent, nothing keeps it
    # With no channel to send it on, it is not kept at all.
    send(app, "volunteer:4", None, key="k:2", template=template, urgent=True)
    assert link not in stored("k:2")


@pytest.mark.parametrize("url", ["http://evil.example/hook", "telegram://bot/chat", "ftp://x/y", "json://"])
def test_only_linli_channel_schemes_are_accepted(app, client, url):
    resp = client.put("/api/v1/recipients/volunteer:9/preferences", headers=STAFF, json={"channels": [url]})
    assert resp.status_code == 422 and "channels" in resp.json["errors"]["json"]
    with pytest.raises(ValidationError) as err:
        contract.NotificationRequested().load({"dedupe_key": "k", "recipient": "volunteer:9", "template": "offer",
                                               "channels": [url]})
    assert "channels" in err.value.messages
    with app.extensions["db"].Session.session_factory() as s:
        assert s.get(Recipient, "volunteer:9") is None


def test_only_the_admin_sets_or_reads_a_recipients_channels(app, client):
    body = {"channels": ["mailto://127.0.0.1:25?from=linli@example.org&to=a@example.org"]}
    for token in (REQUESTS_TOKEN, VOLUNTEERS_TOKEN):
        auth = {"Authorization": f"Bearer {token}"}
        assert client.put("/api/v1/recipients/volunteer:9/preferences", headers=auth, json=body).status_code == 403
    assert client.put("/api/v1/recipients/volunteer:9/preferences", headers=STAFF, json=body).status_code == 200
    assert client.get("/api/v1/recipients/volunteer:9/preferences",
                      headers={"Authorization": f"Bearer {VOLUNTEERS_TOKEN}"}).status_code == 403


def test_the_inbox_and_the_delivery_log_come_in_pages(app, client):
    import json

    for n in range(3):
        send(app, "volunteer:8", None, key=f"page{n}")
    auth = {"Authorization": f"Bearer {VOLUNTEERS_TOKEN}"}
    page = client.get("/api/v1/inbox/volunteer:8?page_size=2", headers=auth)
    assert len(page.json) == 2 and json.loads(page.headers["X-Pagination"])["total"] == 3
    assert client.get("/api/v1/inbox/volunteer:8?page_size=1000", headers=auth).status_code == 422
    assert client.get("/api/v1/deliveries?page_size=1000", headers=STAFF).status_code == 422


def test_the_office_tries_a_dead_delivery_again_by_task_once(app):
    """notify.retry_delivery, as the console sends it: a dead delivery is
    reopened and tried at once; the same message again, or a delivery that
    is not dead, changes nothing."""
    with WebhookReceiver() as hook:
        hook.status = 500
        send(app, "resident:abc", [hook.url("/r")])
        for _ in range(delivery.ATTEMPTS_PER_CHANNEL - 1):
            retry_sweep(app)
        [row] = deliveries(app)
        assert row.status == "dead"
        hook.status = 200
        message = contract.envelope(contract.DELIVERY_RETRY, {"delivery_id": row.id, "actor": "staff:1"},
                                    source="requests")
        with app.app_context():
            assert notify_tasks.retry_delivery.apply(args=[message]).get() == "done"
            assert notify_tasks.retry_delivery.apply(args=[message]).get() == "duplicate"
        [row] = deliveries(app)
        assert (row.status, row.attempts) == ("sent", 1)
        assert len([r for r in hook.received if r["path"] == "/r"]) == delivery.ATTEMPTS_PER_CHANNEL + 1
        again = contract.envelope(contract.DELIVERY_RETRY, {"delivery_id": row.id, "actor": "staff:1"},
                                  source="requests")
        with app.app_context():
            assert notify_tasks.retry_delivery.apply(args=[again]).get() == "done"
        assert [d.status for d in deliveries(app)] == ["sent"]
        assert len([r for r in hook.received if r["path"] == "/r"]) == delivery.ATTEMPTS_PER_CHANNEL + 1
