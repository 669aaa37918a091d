"""Residents' SMS replies (上行短信), pushed by the gateway to notify.

Alibaba Cloud pushes replies (SmsUp, HTTP batch push) as a JSON list of
{phone_number, content, send_time, sign_name, dest_code, sequence_id} and
wants {"code": 0, "msg": …} back; Tencent Cloud (短信回复 callback) posts one
{mobile, nationcode, text, time, sign, extend} and wants {"result": 0,
"errmsg": "OK"}. Neither signs its callbacks, so the address the office
configures at the provider carries a key (`?key=`, LINLI_SMS_REPLY_KEY);
Linli's own request log never writes query strings.

What a reply means depends on the message the number last had that asks
for one (within REPLY_WINDOW): "1"/"2" to the 回访 follow-up is satisfied /
not solved; "1" (or 平安, 好) to the morning check-in text is 报平安; "TD"
or 退订 to any message stops SMS and calls to that number (the law and the
gateways require it). The number is looked up by its keyed digest, and
the typed text is never stored, logged or passed on: only the answer."""
from __future__ import annotations

import hmac
import logging
import re
import unicodedata
from datetime import timedelta

from marshmallow import EXCLUDE, Schema, fields, validate
from sqlalchemy import select

from services.common import contract
from services.common.clock import SHANGHAI, utcnow

from .models import Delivery, Notification, Recipient

log = logging.getLogger(__name__)

# A reply counts for the last message that asked for one within this time.
REPLY_WINDOW = timedelta(days=3)
# The messages a reply answers, and what each understood reply means there.
ASKING = ("follow_up", "checkin")
STOP = ("TD", "T", "N", "退订", "退", "取消", "拒收")
MEANINGS = {
    "follow_up": {"1": "satisfied", "满意": "satisfied", "2": "not_solved", "未解决": "not_solved",
                  "不满意": "not_solved"},
    "checkin": {"1": "ok", "平安": "ok", "报平安": "ok", "好": "ok", "OK": "ok", "在": "ok"},
}


class AliyunReply(Schema):
    class Meta:
        unknown = EXCLUDE

    phone_number = fields.String(required=True, validate=validate.Length(5, 20))
    content = fields.String(required=True, validate=validate.Length(0, 1000))
    send_time = fields.String(load_default="")
    sequence_id = fields.Raw(load_default=None)


class TencentReply(Schema):
    class Meta:
        unknown = EXCLUDE

    mobile = fields.String(required=True, validate=validate.Length(5, 20))
    nationcode = fields.String(load_default="86", validate=validate.Length(1, 4))
    text = fields.String(required=True, validate=validate.Length(0, 1000))
    time = fields.Integer(load_default=None)


# What each provider posts, how to read one reply, and what it wants back.
PROVIDERS = {
    "aliyun": {"schema": AliyunReply(many=True), "phone": "phone_number", "text": "content",
               "ok": {"code": 0, "msg": "成功"}, "bad": lambda msg: {"code": 1, "msg": msg}},
    "tencent": {"schema": TencentReply(), "phone": "mobile", "text": "text",
                "ok": {"result": 0, "errmsg": "OK"}, "bad": lambda msg: {"result": 1, "errmsg": msg}},
}


def key_ok(cfg: dict, given: str | None) -> bool:
    expected = cfg.get("SMS_REPLY_KEY")
    return bool(expected and given and hmac.compare_digest(expected.encode(), given.encode()))


def normalised(text: str) -> str:
    """The reply as a word: full-width digits and letters folded (１ → 1),
    spaces and punctuation dropped, upper case."""
    folded = unicodedata.normalize("NFKC", text or "")
    return re.sub(r"[\s\W_]+", "", folded).upper()


def national(phone: str) -> str:
    digits = "".join(ch for ch in phone if ch.isdigit())
    return digits[2:] if len(digits) == 13 and digits.startswith("86") else digits


def digest(cfg: dict, phone: str) -> str:
    return contract.phone_digest(national(phone), cfg["PHONE_DIGEST_KEY"])


def receive(session, outbox, cfg: dict, phone: str, text: str) -> str:
    """Act on one reply; returns what it was taken as (for the log and the
    tests): satisfied, not_solved, ok, stop, or unknown / unasked."""
    word, number = normalised(text), digest(cfg, phone)
    if word in STOP:
        stop(session, outbox, number)
        return "stop"
    asked = session.execute(
        select(Notification.template, Notification.recipient_key, Notification.created_at)
        .join(Delivery, Delivery.notification_id == Notification.id)
        .where(Delivery.phone_digest == number, Delivery.status == "sent",
               Notification.template.in_(ASKING), Notification.created_at >= utcnow() - REPLY_WINDOW)
        .order_by(Notification.created_at.desc(), Notification.id.desc()).limit(1)).first()
    if asked is None:
        return "unasked"
    answer = MEANINGS[asked.template].get(word)
    if answer is None:
        return "unknown"
    kind, _, ident = asked.recipient_key.partition(":")
    if asked.template == "follow_up" and kind == "resident":
        outbox.emit(session, contract.RESIDENT_REPLIED, {"request_id": ident, "answer": answer})
    elif asked.template == "checkin" and kind == "checkin":
        # It counts for the day of the text it answers (a late reply after
        # midnight does not check in for the next day).
        outbox.emit(session, contract.CHECKIN_REPLIED, {
            "plan_id": int(ident), "on": asked.created_at.astimezone(SHANGHAI).date()})
    else:
        return "unknown"
    return answer


def stop(session, outbox, number: str) -> None:
    """退订: every recipient this number had SMS or calls as stops them; the
    resident's requests record it at intake."""
    keys = session.scalars(select(Notification.recipient_key).distinct()
                           .join(Delivery, Delivery.notification_id == Notification.id)
                           .where(Delivery.phone_digest == number)).all()
    for recipient in session.scalars(select(Recipient).where(Recipient.key.in_(keys))):
        if recipient.sms_opt_out:
            continue
        recipient.sms_opt_out = True
        kind, _, ident = recipient.key.partition(":")
        if kind == "resident":
            outbox.emit(session, contract.RESIDENT_REPLIED, {"request_id": ident, "answer": "stop"})
