"""Residents' SMS replies (上行), pushed by the gateway to notify in each
provider's own shape: "1"/"2" to the 回访 text is the follow-up (intake
records it, "2" reopens), "1" to the morning text is 报平安 (the community
service records the check-in), "TD" stops SMS and calls to the number.
The reply's text never travels, and the gateway's address needs its key."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from services.common import contract
from services.common.clock import SetClock
from services.community.models import CheckIn, Visit
from services.notify.models import Recipient
from tests.factories import add_staff
from tests.test_community_visits import add_resident, checkin_plan, plan, sent
from tests.test_community_visits import run as run_community
from tests.test_sms import (  # noqa: F401  (fixtures)
    CODES,
    PHONE,
    aliyun,
    aliyun_settings,
    clock,
    deliveries,
    make_notify,
    outbox,
    send,
    tencent,
)

KEY = "reply-key-" + "x" * 32


@pytest.fixture
def notify(make_notify, aliyun):  # noqa: F811
    app = make_notify(sms=aliyun_settings(aliyun, templates={**CODES, "checkin": "SMS_900"}))
    app.config["SMS_REPLY_KEY"] = KEY
    return app


def push_aliyun(app, phone, content, key=KEY):
    return app.test_client().post(f"/sms/replies/aliyun?key={key}", json=[
        {"phone_number": phone, "content": content, "send_time": "2026-11-27 12:05:00", "sign_name": "翠苑一区",
         "dest_code": "1234", "sequence_id": 1234567890}])


def push_tencent(app, phone, text, key=KEY):
    return app.test_client().post(f"/sms/replies/tencent?key={key}", json={
        "extend": "", "mobile": phone, "nationcode": "86", "sign": "翠苑一区", "text": text, "time": 1764216300})


def replies(app, task=contract.RESIDENT_REPLIED) -> list[dict]:
    return [e["data"] for e in outbox(app) if e["type"] == task]


def intake_request(intake, messages="text") -> str:
    resp = intake.test_client().post("/api/v1/requests", json={
        "category": "haircut", "description": "想在家理个发", "building": "3", "unit": "1", "room": "302",
        "contact_name": "张桂兰", "contact_phone": PHONE, "mode": "home", "urgency": "normal", "consent": True,
        "messages": messages})
    assert resp.status_code == 201, resp.text
    return resp.get_json()["id"]


def completed(intake, request_id):
    """Matching says the volunteer finished (the consumer intake runs)."""
    for status in ("assigned", "completed"):
        intake_task(intake, contract.STATUS_CHANGED, {
            "request_id": request_id, "status": status, "actor": "volunteer:3", "note": "",
            "volunteer_name": "王师傅", "appointment_at": None, "place": None}, source="volunteers")


def intake_task(intake, name, data, source="notify"):
    with intake.app_context():
        return intake.extensions["celery"].tasks[name].apply(
            args=[contract.envelope(name, data, source=source)]).get()


@pytest.mark.parametrize("push", [push_aliyun, push_tencent])
@pytest.mark.parametrize("typed, answer, reopened", [("1", "satisfied", False), ("１", "satisfied", False),
                                                     ("满意", "satisfied", False), ("2", "not_solved", True),
                                                     (" 2。", "not_solved", True)])
def test_a_reply_to_the_follow_up_is_the_follow_up(make_app, notify, push, typed, answer, reopened):
    intake = make_app("requests", setup=add_staff)
    request_id = intake_request(intake)
    completed(intake, request_id)
    send(notify, f"resident:{request_id}", [f"sms://{PHONE}"], template="follow_up")
    assert deliveries(notify)[0].status == "sent"

    resp = push(notify, PHONE, typed)
    assert resp.status_code == 200
    assert resp.get_json() in ({"code": 0, "msg": "成功"}, {"result": 0, "errmsg": "OK"})
    [reply] = replies(notify)
    assert reply == {"request_id": request_id, "answer": answer}

    [event] = [e for e in outbox(notify) if e["type"] == contract.RESIDENT_REPLIED]
    assert intake_task(intake, contract.RESIDENT_REPLIED, event["data"]) == "done"
    with intake.app_context():
        from services.requests.models import ServiceRequest
        req = intake.extensions["db"].Session.get(ServiceRequest, request_id)
        assert req.feedback is not None and req.feedback.resolved is not reopened
        assert req.feedback.rating == (3 if reopened else 5)
        assert req.status == ("escalated" if reopened else "completed")
        assert f"sms_reply_{answer}" in [h.event for h in req.history]
    # The same answer again (the gateway pushes twice) changes nothing more.
    assert intake_task(intake, contract.RESIDENT_REPLIED, event["data"]) == "done"
    with intake.app_context():
        req = intake.extensions["db"].Session.get(ServiceRequest, request_id)
        assert [h.event for h in req.history].count(f"sms_reply_{answer}") == 1


def test_td_stops_sms_and_calls_to_the_number_and_intake_records_it(make_app, notify, aliyun):  # noqa: F811
    intake = make_app("requests", setup=add_staff)
    first, second = intake_request(intake), intake_request(intake, messages="call")
    send(notify, f"resident:{first}", [f"sms://{PHONE}"], template="assigned")
    send(notify, f"resident:{second}", [f"sms://{PHONE}"], template="assigned")
    send(notify, "resident:" + str(uuid.uuid4()), ["sms://13900000000"], template="assigned")
    assert len(aliyun.received) == 3

    assert push_tencent(notify, "+86" + PHONE, "td").status_code == 200
    with notify.app_context():
        opted = dict(notify.extensions["db"].Session.execute(select(Recipient.key, Recipient.sms_opt_out)).all())
    assert opted[f"resident:{first}"] and opted[f"resident:{second}"]
    assert sum(opted.values()) == 2  # the other number still gets its messages
    assert sorted(r["request_id"] for r in replies(notify)) == sorted([first, second])
    assert {r["answer"] for r in replies(notify)} == {"stop"}

    send(notify, f"resident:{first}", None, template="completed")
    assert len(aliyun.received) == 3  # the inbox has it, no SMS

    for request_id in (first, second):
        assert intake_task(intake, contract.RESIDENT_REPLIED, {"request_id": request_id, "answer": "stop"}) == "done"
    with intake.app_context():
        from services.requests.models import ServiceRequest
        for request_id in (first, second):
            req = intake.extensions["db"].Session.get(ServiceRequest, request_id)
            assert req.messages == "none" and "messages_stopped" in [h.event for h in req.history]


def test_a_reply_that_answers_nothing_or_says_something_else_changes_nothing(notify, caplog):
    caplog.set_level(logging.DEBUG)
    who = "resident:" + str(uuid.uuid4())
    send(notify, who, [f"sms://{PHONE}"], template="assigned")  # asks for no reply
    assert push_aliyun(notify, PHONE, "1").status_code == 200
    send(notify, who, [f"sms://{PHONE}"], template="follow_up")
    assert push_aliyun(notify, PHONE, "请帮我修一下水龙头 13812345678").status_code == 200
    assert push_aliyun(notify, "13700000000", "1").status_code == 200  # a number never asked
    assert replies(notify) == []
    # What is written (every logger's text) and what Linli's own records carry as extras.
    logged = caplog.text + str([r.__dict__ for r in caplog.records if r.name.startswith("services.")])
    assert "水龙头" not in logged and PHONE not in logged and "13700000000" not in logged
    assert KEY not in logged


def test_a_reply_to_an_old_follow_up_answers_nothing(notify, clock):  # noqa: F811
    who = "resident:" + str(uuid.uuid4())
    send(notify, who, [f"sms://{PHONE}"], template="follow_up")
    clock.advance(timedelta(days=4))
    assert push_aliyun(notify, PHONE, "1").status_code == 200
    assert replies(notify) == []


@pytest.mark.parametrize("key", ["", "wrong-key", KEY[:-1]])
def test_without_the_key_the_gateways_address_is_not_there(notify, key):
    who = "resident:" + str(uuid.uuid4())
    send(notify, who, [f"sms://{PHONE}"], template="follow_up")
    assert push_aliyun(notify, PHONE, "TD", key=key).status_code == 404
    assert push_tencent(notify, PHONE, "TD", key=key).status_code == 404
    with notify.app_context():
        assert not notify.extensions["db"].Session.get(Recipient, who).sms_opt_out
    assert replies(notify) == []


def test_replies_are_off_until_the_office_sets_a_key(make_notify, aliyun):  # noqa: F811
    app = make_notify(sms=aliyun_settings(aliyun))
    assert "SMS_REPLY_KEY" not in app.config
    assert push_aliyun(app, PHONE, "TD", key="").status_code == 404


@pytest.mark.parametrize("path, body, field", [
    ("aliyun", [{"content": "1"}], "phone_number"),
    ("aliyun", {"phone_number": PHONE, "content": "1"}, "_schema"),  # a list, not one reply
    ("tencent", {"mobile": PHONE}, "text"),
    ("tencent", {"mobile": PHONE, "text": "1", "time": "noon"}, "time"),
])
def test_a_body_not_in_the_providers_shape_gets_field_errors_and_changes_nothing(notify, path, body, field):
    who = "resident:" + str(uuid.uuid4())
    send(notify, who, [f"sms://{PHONE}"], template="follow_up")
    resp = notify.test_client().post(f"/sms/replies/{path}?key={KEY}", json=body)
    assert resp.status_code == 422
    answer = resp.get_json()
    errors = answer.get("msg") if path == "aliyun" else answer.get("errmsg")
    assert answer.get("code", answer.get("result")) == 1
    assert field in (errors.get("0", errors) if isinstance(errors, dict) else {})
    assert replies(notify) == []
    assert notify.test_client().post(f"/sms/replies/{path}?key={KEY}", data="not json").status_code == 422


# --- 报平安 by reply ---

# 08:30 in Hangzhou.
MORNING = datetime(2026, 12, 3, 0, 30, tzinfo=timezone.utc)


def test_the_morning_text_goes_once_to_those_reached_by_text_and_a_reply_checks_them_in(make_app, notify, aliyun):  # noqa: F811,E501
    community_clock = SetClock(MORNING - timedelta(days=1, hours=1))  # 07:30 the day before
    community = make_app("community", clock=community_clock)
    checkin_plan(community, community_clock, room="501", name="赵玉珍", phone=PHONE)
    checkin_plan(community, community_clock, room="502", name="孙凤英", phone=None, household_phone="0571-88001234")
    by_leader = add_resident(community, room="503", name="钱桂芳", phone="13900001111")
    plan(community, by_leader, checkin_daily=True)
    with community.app_context():
        from services.community.models import Resident
        s = community.extensions["db"].Session
        s.get(Resident, by_leader).reach_by = "hallway_leader"
        s.commit()

    community_clock.at = MORNING - timedelta(hours=1)  # 07:30: too early
    assert run_community(community, contract.VISITS_DUE)["morning_texts"] == 0
    community_clock.at = MORNING
    # Two are reached by text (钱桂芳 by her hallway leader); only 赵玉珍 has a mobile.
    assert run_community(community, contract.VISITS_DUE)["morning_texts"] == 2
    assert run_community(community, contract.VISITS_DUE)["morning_texts"] == 0  # once a day
    [text] = sent(community, contract.NOTIFY_SEND)
    assert text["template"] == "checkin" and text["channels"] == [f"sms://{PHONE}"]
    assert text["recipient"].startswith("checkin:") and text["context"]["office_phone"]

    # Notify sends it as the approved template; the resident answers "1".
    notify.extensions["clock"].at = MORNING
    send(notify, text["recipient"], text["channels"], template="checkin", key=text["dedupe_key"],
         context=text["context"])
    assert aliyun.received[-1]["TemplateCode"] == "SMS_900"
    notify.extensions["clock"].at = MORNING + timedelta(minutes=20)
    assert push_aliyun(notify, PHONE, "1").status_code == 200
    [reply] = replies(notify, contract.CHECKIN_REPLIED)
    assert reply == {"plan_id": int(text["recipient"].split(":")[1]), "on": "2026-12-03"}

    # The community service consumes the very envelope notify wrote.
    [envelope] = [e for e in outbox(notify) if e["type"] == contract.CHECKIN_REPLIED]
    with community.app_context():
        assert community.extensions["celery"].tasks[contract.CHECKIN_REPLIED].apply(args=[envelope]).get() == "done"
    with community.app_context():
        [row] = community.extensions["db"].Session.scalars(select(CheckIn)).all()
        assert row.on.isoformat() == "2026-12-03"
    # At the deadline, a visitor goes to the two who did not check in, not to her.
    community_clock.at = MORNING + timedelta(hours=1, minutes=31)  # 10:01
    assert run_community(community, contract.VISITS_DUE)["missed_checkins"] == 2
    with community.app_context():
        s = community.extensions["db"].Session
        assert s.scalar(select(func.count()).select_from(Visit).where(Visit.reason == "missed_checkin")) == 2
    missed = [r["contact_name"] for r in sent(community) if r["reason"] == "missed_checkin"]
    assert sorted(missed) == sorted(["孙凤英", "钱桂芳"])
