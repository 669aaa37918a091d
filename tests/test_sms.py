"""SMS and voice calls to residents through Alibaba Cloud and Tencent Cloud
(services/notify/gateways.py), against local receivers that verify each
provider's signature from the shared secret: events → template codes and
parameters, length limits, error classes (refusals are not retried,
transient errors are), a dead SMS falling back to the inbox and reaching
intake, the opt-out (退订), quiet hours."""
from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.common import contract
from services.common.clock import SHANGHAI, SetClock
from services.common.settings import ConfigError, check_secrets
from services.notify import config as notify_config
from services.notify import delivery, gateways
from services.notify import tasks as notify_tasks
from services.notify.models import Delivery, OutboxMessage
from tests.conftest import ADMIN_TOKEN, REQUESTS_TOKEN, SECRETS
from tests.factories import add_staff
from tests.factories import staff_signed_in as signed_in
from tests.receivers import AliyunReceiver, TencentReceiver, free_port
from tests.test_notify import LATE, NOON

ALIYUN_ID, ALIYUN_SECRET = "LTAI5tExampleKeyId00001", "aliyun-secret-0123456789abcdefg"  # 30 characters
TENCENT_ID, TENCENT_SECRET = "AKIDexampleSecretId000000000000000001", "tencent-secret-0123456789abcdefghij"
PHONE = "13812345678"
CODES = {event: f"SMS_{100 + i}" for i, event in enumerate(gateways.EVENT_PARAMS)}
TENCENT_CODES = {event: str(2000 + i) for i, event in enumerate(gateways.EVENT_PARAMS)}
VOICE_CODES = {"assigned": "TTS_1", "follow_up": "TTS_2"}
TENCENT_VOICE_CODES = {"assigned": "3001", "follow_up": "3002"}

CONTEXTS = {
    "assigned": {"category": "appliance_repair", "tracking_code": "ABCD2345EFGH", "volunteer_name": "王师傅",
                 "tracking_url": "http://x/track/ABCD2345EFGH", "appointment": "11月28日 周六 09:00",
                 "place": "翠邻里服务站"},
    "completed": {"category": "haircut", "tracking_code": "ABCD2345EFGH", "volunteer_name": "王师傅",
                  "tracking_url": "http://x/track/ABCD2345EFGH"},
    "follow_up": {"category": "haircut", "tracking_code": "ABCD2345EFGH",
                  "tracking_url": "http://x/track/ABCD2345EFGH"},
    "extended": {"category": "lift_retrofit", "tracking_code": "ABCD2345EFGH", "days": 10, "due": "12月18日",
                 "why": "等待施工队", "tracking_url": "http://x/track/ABCD2345EFGH"},
    "closed": {"category": "parking", "tracking_code": "ABCD2345EFGH", "tracking_url": "http://x/track/ABCD2345EFGH"},
    "checkin": {"office_phone": "0571-88001234"},
}
# What each event's parameters are, by name, as the approved templates use them.
EXPECTED = {
    "assigned": {"name": "王师傅", "time": "11月28日 周六 09:00", "place": "翠邻里服务站"},
    "completed": {"name": "王师傅", "service": "理发"},
    "follow_up": {"service": "理发", "code": "ABCD2345EFGH"},
    "extended": {"service": "加装电梯", "days": "10", "due": "12月18日"},
    "closed": {"service": "停车", "code": "ABCD2345EFGH"},
    "checkin": {},  # the morning text is fixed words
}


@pytest.fixture
def clock():
    return SetClock(NOON)


@pytest.fixture
def aliyun():
    with AliyunReceiver(ALIYUN_ID, ALIYUN_SECRET) as receiver:
        yield receiver


@pytest.fixture
def tencent():
    with TencentReceiver(TENCENT_ID, TENCENT_SECRET) as receiver:
        yield receiver


def aliyun_settings(receiver, secret=ALIYUN_SECRET, **over):
    return {"gateway": "aliyun", "templates": CODES, "endpoint": receiver.base, "key_id": ALIYUN_ID,
            "secret": secret, "region": "cn-hangzhou", "sign_name": "翠苑一区", "param_limit": 35, **over}


def tencent_settings(receiver, secret=TENCENT_SECRET, **over):
    return {"gateway": "tencent", "templates": TENCENT_CODES, "endpoint": receiver.base, "key_id": TENCENT_ID,
            "secret": secret, "app_id": "1400006666", "region": "ap-guangzhou", "sign_name": "翠苑一区",
            "param_limit": 12, **over}


def tencent_voice_settings(receiver, secret=TENCENT_SECRET):
    return {"gateway": "tencent", "templates": TENCENT_VOICE_CODES, "endpoint": receiver.base, "key_id": TENCENT_ID,
            "secret": secret, "app_id": "1400009999", "region": "ap-guangzhou", "param_limit": 12}


@pytest.fixture
def make_notify(make_app, monkeypatch, clock):
    monkeypatch.setattr(delivery, "RETRY_BASE_SECONDS", 0.0)  # retries due at once

    def make(sms=None, voice=None):
        return make_app("notify", clock=clock, CHANNEL_TIMEOUT=2.0,
                        SMS=sms or {"gateway": None, "templates": {}},
                        VOICE=voice or {"gateway": None, "templates": {}})
    return make


def resident() -> str:
    return f"resident:{uuid.uuid4()}"


def send(app, recipient, channels, template="assigned", key=None, urgent=False, context=None):
    message = contract.envelope(contract.NOTIFY_SEND, {
        "dedupe_key": key or f"{template}:{uuid.uuid4()}", "recipient": recipient, "channels": channels,
        "language": "zh-CN", "template": template, "context": context or CONTEXTS[template], "urgent": urgent},
        source="requests")
    with app.app_context():  # the app's own task: another app made later would take the shared one
        return app.extensions["celery"].tasks[contract.NOTIFY_SEND].apply(args=[message]).get()


def deliveries(app):
    with app.extensions["db"].Session.session_factory() as s:
        return s.scalars(select(Delivery).order_by(Delivery.id)).all()


def outbox(app):
    with app.extensions["db"].Session.session_factory() as s:
        return [row.envelope for row in s.scalars(select(OutboxMessage)).all()]


def sweep(app, times=1):
    with app.app_context():
        for _ in range(times):
            notify_tasks.retry_deliveries.apply().get()


# --- events → templates and parameters, per gateway ---


@pytest.mark.parametrize("event", list(gateways.EVENT_PARAMS))
def test_each_event_goes_to_alibaba_as_its_template_with_named_parameters(make_notify, aliyun, event):
    app = make_notify(sms=aliyun_settings(aliyun))
    send(app, resident(), [f"sms://{PHONE}"], template=event)
    [got] = aliyun.received  # the receiver checked the signature before taking it
    assert (got["Action"], got["Version"], got["SignatureMethod"]) == ("SendSms", "2017-05-25", "HMAC-SHA1")
    assert (got["PhoneNumbers"], got["SignName"], got["TemplateCode"]) == (PHONE, "翠苑一区", CODES[event])
    assert got["TemplateParam"] == EXPECTED[event]
    assert [d.status for d in deliveries(app)] == ["sent"]


@pytest.mark.parametrize("event", list(gateways.EVENT_PARAMS))
def test_each_event_goes_to_tencent_as_its_template_with_ordered_parameters(make_notify, tencent, event):
    app = make_notify(sms=tencent_settings(tencent))
    send(app, resident(), [f"sms://{PHONE}"], template=event)
    [got] = tencent.received
    assert got["PhoneNumberSet"] == [f"+86{PHONE}"] and got["SmsSdkAppId"] == "1400006666"
    assert (got["SignName"], got["TemplateId"]) == ("翠苑一区", TENCENT_CODES[event])
    # Tencent's parameters are positional: {1}, {2}… in the order of EVENT_PARAMS.
    assert got["TemplateParamSet"] == [gateways.fit(EXPECTED[event][n], 12) for n in gateways.EVENT_PARAMS[event]]
    assert [d.status for d in deliveries(app)] == ["sent"]


def test_the_volunteers_phone_never_travels_only_their_name(make_notify, aliyun):
    app = make_notify(sms=aliyun_settings(aliyun))
    send(app, resident(), [f"sms://{PHONE}"], context={**CONTEXTS["assigned"], "volunteer_phone": "13900001111"})
    assert "13900001111" not in str(aliyun.received)


def test_parameters_are_cut_to_each_gateways_limit(make_notify, aliyun, tencent):
    long_place = "翠苑一区第三十六幢一单元门口的翠邻里便民服务站（靠近西门自行车棚旁边）【请带好工具】"
    context = {**CONTEXTS["assigned"], "place": long_place}
    send(make_notify(sms=aliyun_settings(aliyun)), resident(), [f"sms://{PHONE}"], context=context)
    place = aliyun.received[0]["TemplateParam"]["place"]
    assert len(place) == gateways.ALIYUN_PARAM_LIMIT and place.endswith("…") and place.startswith("翠苑一区")
    assert "【" not in place and "】" not in place  # brackets read as a signature
    send(make_notify(sms=tencent_settings(tencent)), resident(), [f"sms://{PHONE}"], context=context)
    params = tencent.received[0]["TemplateParamSet"]
    assert all(len(p) <= gateways.TENCENT_PARAM_LIMIT for p in params) and params[2].endswith("…")
    # A limit of 0 (an enterprise-verified Tencent account) cuts nothing.
    tencent.received.clear()
    send(make_notify(sms=tencent_settings(tencent, param_limit=0)), resident(), [f"sms://{PHONE}"], context=context)
    assert tencent.received[0]["TemplateParamSet"][2] == long_place.replace("【", "(").replace("】", ")")


# --- signatures ---


@pytest.mark.parametrize("provider", ["aliyun", "tencent", "tencent voice"])
def test_a_wrong_secret_gets_the_providers_error_and_is_not_retried(make_notify, aliyun, tencent, provider):
    channel = f"sms://{PHONE}"
    if provider == "aliyun":
        receiver, error = aliyun, "SignatureDoesNotMatch"
        app = make_notify(sms=aliyun_settings(aliyun, secret="x" * 30))
    elif provider == "tencent":
        receiver, error = tencent, "AuthFailure.SignatureFailure"
        app = make_notify(sms=tencent_settings(tencent, secret="y" * 32))
    else:
        receiver, error, channel = tencent, "AuthFailure.SignatureFailure", f"voice://{PHONE}"
        app = make_notify(voice=tencent_voice_settings(tencent, secret="y" * 32))
    send(app, resident(), [channel])
    [d] = deliveries(app)
    assert receiver.received == [] and len(receiver.rejected) == 1
    assert (d.status, d.attempts) == ("dead", 1) and d.last_error.startswith(f"rejected: {error}")
    sweep(app, 3)
    assert len(receiver.rejected) == 1


def test_a_broken_signer_fails(make_notify, aliyun, monkeypatch):
    """The receiver recomputes the signature itself: a signer that leaves out
    a parameter is caught."""
    real = gateways.aliyun_signature
    monkeypatch.setattr(gateways, "aliyun_signature", lambda method, params, secret: real(
        method, {k: v for k, v in params.items() if k != "TemplateParam"}, secret))
    app = make_notify(sms=aliyun_settings(aliyun))
    send(app, resident(), [f"sms://{PHONE}"])
    assert aliyun.received == [] and deliveries(app)[0].last_error.startswith("rejected: SignatureDoesNotMatch")


# --- error classes ---


@pytest.mark.parametrize("provider, code, permanent", [
    ("aliyun", "isv.BUSINESS_LIMIT_CONTROL", "rate limited"),
    ("aliyun", "isv.MOBILE_NUMBER_ILLEGAL", "number refused"),
    ("aliyun", "isv.BLACK_KEY_CONTROL_LIMIT", "number refused"),
    ("aliyun", "isp.SYSTEM_ERROR", None),
    ("aliyun", 503, None),
    ("tencent", "LimitExceeded.PhoneNumberDailyLimit", "rate limited"),
    ("tencent", "InvalidParameterValue.IncorrectPhoneNumber", "number refused"),
    ("tencent", "FailedOperation.PhoneNumberInBlacklist", "number refused"),
    ("tencent", "error:InternalError.Timeout", None),
    ("tencent", "error:LimitExceeded.AppDailyLimit", "rate limited"),
    # Tencent voice answers every error at the request's level.
    ("tencent voice", "error:LimitExceeded.DeliveryFrequencyLimit", "rate limited"),
    ("tencent voice", "error:InvalidParameterValue.CalledNumberVerifyFail", "number refused"),
    ("tencent voice", "error:FailedOperation.TemplateIncorrectOrUnapproved", "rejected"),
    ("tencent voice", "error:FailedOperation.AccessUpstreamTimeout", None),
    ("tencent voice", "error:InternalError.UpstreamError", None),
])
def test_refusals_are_not_retried_transient_errors_are(make_notify, aliyun, tencent, provider, code, permanent):
    receiver = aliyun if provider == "aliyun" else tencent
    settings = {"sms": aliyun_settings(aliyun) if provider == "aliyun" else tencent_settings(tencent)}
    channel = f"sms://{PHONE}"
    if provider == "tencent voice":
        settings, channel = {"voice": tencent_voice_settings(tencent)}, f"voice://{PHONE}"
    if code == 503:
        receiver.status = 503
    elif code.startswith("error:"):
        receiver.error = code.removeprefix("error:")  # a request-level error (Tencent's Response.Error)
    else:
        receiver.code = code
    app = make_notify(**settings)
    send(app, resident(), [channel])
    [d] = deliveries(app)
    if permanent:
        assert (d.status, d.attempts) == ("dead", 1) and d.last_error.startswith(permanent)
        sweep(app, 2)
        assert len(receiver.received) == 1
    else:
        assert (d.status, d.attempts) == ("failed", 1)
        sweep(app, delivery.ATTEMPTS_PER_CHANNEL - 1)
        [d] = deliveries(app)
        assert (d.status, d.attempts) == ("dead", delivery.ATTEMPTS_PER_CHANNEL)
        assert len(receiver.received) == delivery.ATTEMPTS_PER_CHANNEL
    assert PHONE not in d.last_error


def test_an_unreachable_gateway_is_retried(make_notify):
    nobody = type("Nobody", (), {"base": f"http://127.0.0.1:{free_port()}"})  # nothing listens there
    app = make_notify(sms=aliyun_settings(nobody))
    send(app, resident(), [f"sms://{PHONE}"])
    [d] = deliveries(app)
    assert d.status == "failed" and d.last_error.startswith("unreachable")


def test_a_refusal_moves_on_to_the_next_channel_which_then_gets_its_own_tries(make_notify, aliyun, tencent):
    """voice refused for good → SMS at once, and SMS keeps its three tries."""
    aliyun.code = "isv.MOBILE_NUMBER_ILLEGAL"
    tencent.error = "InternalError"
    app = make_notify(sms=tencent_settings(tencent),
                      voice={**aliyun_settings(aliyun), "templates": VOICE_CODES, "show_number": "057188880000"})
    send(app, resident(), [f"voice://{PHONE}", f"sms://{PHONE}"])
    [d] = deliveries(app)
    assert (d.status, d.channel_index, d.attempts) == ("failed", 1, 1)
    sweep(app, delivery.ATTEMPTS_PER_CHANNEL)
    [d] = deliveries(app)
    assert (d.status, d.attempts) == ("dead", 1 + delivery.ATTEMPTS_PER_CHANNEL)
    assert len(tencent.received) == delivery.ATTEMPTS_PER_CHANNEL


# --- voice ---


def test_a_resident_who_prefers_a_call_is_called_for_the_messages_that_matter(make_notify, aliyun, tencent):
    app = make_notify(sms=tencent_settings(tencent),
                      voice={**aliyun_settings(aliyun), "templates": VOICE_CODES, "show_number": "057188880000"})
    who = resident()
    send(app, who, [f"voice://{PHONE}", f"sms://{PHONE}"], template="assigned")
    [call] = aliyun.received
    assert (call["Action"], call["CalledNumber"], call["TtsCode"]) == ("SingleCallByTts", PHONE, "TTS_1")
    assert call["TtsParam"] == EXPECTED["assigned"] and call["CalledShowNumber"] == "057188880000"
    assert tencent.received == []
    # "Completed" is not worth a call: the SMS carries it.
    send(app, who, None, template="completed")
    assert len(aliyun.received) == 1 and tencent.received[0]["TemplateId"] == TENCENT_CODES["completed"]
    assert deliveries(app)[1].channels == [f"sms://{PHONE}"]
    send(app, who, None, template="follow_up")
    assert aliyun.received[-1]["TtsCode"] == "TTS_2" and aliyun.received[-1]["TtsParam"]["code"] == "ABCD2345EFGH"


def test_tencent_voice_calls_with_its_own_application_and_ordered_parameters(make_notify, tencent):
    app = make_notify(sms=tencent_settings(tencent), voice=tencent_voice_settings(tencent))
    who = resident()
    send(app, who, [f"voice://{PHONE}", f"sms://{PHONE}"], template="assigned")
    [call] = tencent.received
    assert (call["CalledNumber"], call["VoiceSdkAppid"], call["TemplateId"], call["PlayTimes"]) == (
        f"+86{PHONE}", "1400009999", "3001", 2)
    # Positional, as SMS, cut to the same 12 characters.
    assert call["TemplateParamSet"] == ["王师傅", "11月28日 周六 0…", "翠邻里服务站"]
    assert deliveries(app)[0].status == "sent"
    send(app, who, None, template="completed")  # not worth a call: the SMS carries it
    assert "SmsSdkAppId" in tencent.received[-1] and tencent.received[-1]["TemplateId"] == TENCENT_CODES["completed"]


def test_without_a_configured_gateway_or_template_only_the_inbox_has_it(make_notify, aliyun):
    app = make_notify()
    send(app, resident(), [f"sms://{PHONE}"])
    assert deliveries(app) == []
    app = make_notify(sms=aliyun_settings(aliyun, templates={"assigned": "SMS_1"}))
    send(app, resident(), [f"sms://{PHONE}"], template="completed")
    assert deliveries(app) == [] and aliyun.received == []


# --- fallback to the inbox, and intake hears ---


def test_a_dead_sms_stays_in_the_inbox_and_intake_shows_the_grid_leader(make_notify, make_app, aliyun):
    aliyun.code = "isv.MOBILE_NUMBER_ILLEGAL"
    intake = make_app("requests", setup=add_staff)
    resp = intake.test_client().post("/api/v1/requests", json={
        "category": "haircut", "description": "想在家理个发", "building": "3", "unit": "1", "room": "302",
        "contact_name": "张桂兰", "contact_phone": PHONE, "mode": "home", "urgency": "normal", "consent": True})
    request_id = resp.get_json()["id"]
    app = make_notify(sms=aliyun_settings(aliyun))
    send(app, f"resident:{request_id}", [f"sms://{PHONE}"], template="completed")
    assert deliveries(app)[0].status == "dead"
    inbox = app.test_client().get(f"/api/v1/inbox/resident:{request_id}",
                                  headers={"Authorization": f"Bearer {REQUESTS_TOKEN}"}).get_json()
    assert len(inbox) == 1 and "王师傅" in inbox[0]["body"]
    [event] = [e for e in outbox(app) if e["type"] == contract.RESIDENT_UNREACHABLE]
    assert event["data"] == {"request_id": request_id, "template": "completed", "channel": "sms",
                             "error": deliveries(app)[0].last_error}
    # Intake consumes the very envelope notify wrote.
    from services.requests import tasks as intake_tasks
    consumer = intake.extensions["celery"].tasks[contract.RESIDENT_UNREACHABLE]  # runs in intake's app
    assert intake_tasks.resident_unreachable.name == consumer.name
    assert consumer.apply(args=[event]).get() == "done"
    assert consumer.apply(args=[event]).get() != "done"  # once per envelope
    page = signed_in(intake, "g1").get(f"/staff/requests/{request_id}")
    assert 'id="unreachable"' in page.text and page.text.count('id="unreachable"') == 1


def test_a_dead_delivery_to_a_volunteer_is_not_reported_as_a_resident(make_notify, aliyun):
    aliyun.code = "isv.MOBILE_NUMBER_ILLEGAL"
    app = make_notify(sms=aliyun_settings(aliyun))
    send(app, "volunteer:7", [f"sms://{PHONE}"])
    assert deliveries(app)[0].status == "dead"
    assert [e for e in outbox(app) if e["type"] == contract.RESIDENT_UNREACHABLE] == []


# --- opt-out (退订) ---


def test_an_opted_out_resident_gets_nothing_but_the_inbox(make_notify, aliyun):
    app = make_notify(sms=aliyun_settings(aliyun))
    who = resident()
    send(app, who, [f"sms://{PHONE}", "json://127.0.0.1:9/office"], template="assigned")
    client, admin = app.test_client(), {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    resp = client.put(f"/api/v1/recipients/{who}/preferences", json={"sms_opt_out": True}, headers=admin)
    assert resp.status_code == 200 and resp.get_json()["sms_opt_out"] is True
    assert resp.get_json()["channels"] == ["sms://****", "json://127.0.0.1:9/****"]  # the phone is not shown
    send(app, who, None, template="completed")
    send(app, who, None, template="follow_up")
    assert len(aliyun.received) == 1
    assert [d.channels for d in deliveries(app)][1:] == [["json://127.0.0.1:9/office"]] * 2
    inbox = client.get(f"/api/v1/inbox/{who}", headers={"Authorization": f"Bearer {REQUESTS_TOKEN}"}).get_json()
    assert [m["template"] for m in inbox] == ["follow_up", "completed", "assigned"]
    # Opting back in.
    client.put(f"/api/v1/recipients/{who}/preferences", json={"sms_opt_out": False}, headers=admin)
    send(app, who, None, template="closed")
    assert len(aliyun.received) == 2


def test_an_opt_out_stops_an_sms_already_held_by_quiet_hours(make_notify, aliyun, clock):
    clock.at = LATE
    app = make_notify(sms=aliyun_settings(aliyun))
    who = resident()
    send(app, who, [f"sms://{PHONE}"], template="completed")
    app.test_client().put(f"/api/v1/recipients/{who}/preferences", json={"sms_opt_out": True},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    clock.at = LATE + timedelta(hours=9)
    sweep(app)
    [d] = deliveries(app)
    assert aliyun.received == [] and (d.status, d.attempts) == ("dead", 0) and "opted out" in d.last_error
    assert outbox(app) == []  # not "unreachable": they asked for it


# --- quiet hours ---


def test_quiet_hours_hold_an_sms_and_an_urgent_one_goes(make_notify, aliyun, clock):
    clock.at = LATE  # 22:30 in Hangzhou
    app = make_notify(sms=aliyun_settings(aliyun))
    send(app, resident(), [f"sms://{PHONE}"], template="completed")
    send(app, resident(), [f"sms://{PHONE}"], template="assigned", urgent=True)
    assert [r["TemplateCode"] for r in aliyun.received] == [CODES["assigned"]]
    held = deliveries(app)[0]
    assert held.status == "queued"
    assert held.next_attempt_at.astimezone(SHANGHAI).strftime("%H:%M") == "07:00"
    clock.at = LATE + timedelta(hours=9)
    sweep(app)
    assert [r["TemplateCode"] for r in aliyun.received] == [CODES["assigned"], CODES["completed"]]


# --- configuration and secrets ---

GATEWAY_ENV = {"LINLI_SMS_GATEWAY": "aliyun", "LINLI_VOICE_GATEWAY": "aliyun", "LINLI_SMS_SIGN_NAME": "翠苑一区",
               "LINLI_ALIYUN_ACCESS_KEY_ID": ALIYUN_ID, "LINLI_SMS_TEMPLATES": '{"assigned": "SMS_1"}'}


@pytest.mark.parametrize("secret, problem", [
    (None, "LINLI_ALIYUN_ACCESS_KEY_SECRET is not set"),
    ("change-me-to-a-random-value-please", "still a placeholder"),
    ("short", "shorter than 30 characters"),
    (ALIYUN_SECRET, None),
])
def test_gateway_keys_are_checked_at_start_up(monkeypatch, secret, problem):
    for name, value in GATEWAY_ENV.items():
        monkeypatch.setenv(name, value)
    if secret:
        monkeypatch.setenv("LINLI_ALIYUN_ACCESS_KEY_SECRET", secret)
    cfg = notify_config.gateway_config()
    assert cfg["SMS"]["gateway"] == "aliyun" and cfg["VOICE"]["endpoint"] == "https://dyvmsapi.aliyuncs.com"
    if problem:
        with pytest.raises(ConfigError, match=problem):
            check_secrets({**SECRETS, **cfg})
    else:
        check_secrets({**SECRETS, **cfg})
        assert cfg["ALIYUN_SECRET"] == ALIYUN_SECRET


@pytest.mark.parametrize("name, value, problem", [
    ("LINLI_SMS_GATEWAY", "twilio", "must be one of aliyun, tencent"),
    ("LINLI_VOICE_GATEWAY", "twilio", "must be one of aliyun, tencent"),
    ("LINLI_VOICE_GATEWAY", "tencent", "LINLI_TENCENT_VOICE_APP_ID is not set"),
    ("LINLI_SMS_TEMPLATES", '{"birthday": "SMS_1"}', "no such event"),
    ("LINLI_SMS_SIGN_NAME", "", "LINLI_SMS_SIGN_NAME is not set"),
])
def test_a_bad_gateway_setting_stops_start_up(monkeypatch, name, value, problem):
    for key, val in {**GATEWAY_ENV, "LINLI_ALIYUN_ACCESS_KEY_SECRET": ALIYUN_SECRET, name: value}.items():
        monkeypatch.setenv(key, val)
    with pytest.raises(ConfigError, match=problem):
        notify_config.gateway_config()


def test_no_key_or_phone_reaches_the_log(make_notify, aliyun, tencent, caplog):
    caplog.set_level(logging.DEBUG)
    send(make_notify(sms=aliyun_settings(aliyun)), resident(), [f"sms://{PHONE}"])
    send(make_notify(sms=tencent_settings(tencent)), resident(), [f"sms://{PHONE}"])
    # What is written (every logger's text) and what Linli's own records carry as extras.
    logged = caplog.text + str([r.__dict__ for r in caplog.records if r.name.startswith("services.")])
    assert ALIYUN_SECRET not in logged and TENCENT_SECRET not in logged and PHONE not in logged
