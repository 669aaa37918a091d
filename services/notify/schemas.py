"""What the notify API accepts and returns: inbox messages, the delivery
log (channel URLs masked: they are secrets), previews, preferences."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.common import contract

from . import channels, messages


class InboxMessageOut(Schema):
    id = fields.Integer()
    template = fields.String()
    title = fields.String()
    body = fields.String(attribute="short_body")  # never a sign-in or offer link (messages.SECRET_CONTEXT)
    urgent = fields.Boolean()
    read = fields.Function(lambda n: n.read_at is not None)
    created_at = fields.AwareDateTime()


class DeliveryQuery(Schema):
    recipient = fields.String(validate=validate.Length(1, 100))
    key = fields.List(fields.String(validate=validate.Length(1, 200)), validate=validate.Length(1, 50))
    status = fields.String(validate=validate.OneOf(("queued", "sending", "failed", "sent", "dead")))
    since = fields.AwareDateTime()


class DeliveryOut(Schema):
    id = fields.Integer()
    recipient = fields.String(attribute="notification.recipient_key")
    dedupe_key = fields.String(attribute="notification.dedupe_key")
    template = fields.String(attribute="notification.template")
    channel = fields.Function(lambda d: contract.mask_url(d.channels[min(d.channel_index, len(d.channels) - 1)]))
    channels = fields.Function(lambda d: [contract.mask_url(u) for u in d.channels])
    status = fields.String()
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    next_attempt_at = fields.AwareDateTime()
    created_at = fields.AwareDateTime()
    sent_at = fields.AwareDateTime(allow_none=True)


class PreviewIn(Schema):
    template = fields.String(required=True, validate=validate.OneOf(contract.TEMPLATES))
    language = fields.String(load_default="zh-CN", validate=validate.OneOf(contract.LANGUAGES))
    context = fields.Dict(keys=fields.String(), required=True, metadata={"description": (
        "The template's variables, each template's own (a missing one cannot be rendered): "
        + "; ".join(f"{name}: {', '.join(keys)}" for name, keys in messages.VARIABLES.items()))})


class PreviewOut(Schema):
    title = fields.String()
    short = fields.String()
    full = fields.String()
    short_length = fields.Integer()


UNDERSTOOD = ("Not a channel URL Linli understands (wecombot://, dingtalk://, feishu://, mailto://, json://, "
              "sms://<mobile>, voice://<mobile>, …).")
QUIET = "Give both ends of the quiet hours."


def channel_ok(url: str) -> None:
    """What the channel's sender understands, beyond the scheme (contract.channel_url)."""
    if contract.CHANNEL_URL.match(url) and not channels.valid(url):
        raise ValidationError(UNDERSTOOD)


def Channel(**kwargs) -> fields.String:  # noqa: N802 - reads as a field type
    return fields.String(validate=[validate.Length(1, 2000), contract.channel_url, channel_ok],
                         metadata={"description": "A channel URL Linli can send to (the scheme is not enough)."},
                         **kwargs)


class TestMessageIn(Schema):
    channel = Channel(required=True)
    language = fields.String(load_default="zh-CN", validate=validate.OneOf(contract.LANGUAGES))


class PreferencesIn(Schema):
    language = fields.String(validate=validate.OneOf(contract.LANGUAGES))
    quiet_start = contract.ClockTime(metadata={"description": QUIET})
    quiet_end = contract.ClockTime(metadata={"description": QUIET})
    channels = fields.List(Channel(), validate=validate.Length(0, 5))
    sms_opt_out = fields.Boolean(metadata={"description": (
        "退订: true stops SMS and calls (sms://, voice://) to this recipient; the in-app inbox still has "
        "every message.")})

    @validates_schema
    def _both_ends(self, data, **kwargs):
        if ("quiet_start" in data) != ("quiet_end" in data):
            raise ValidationError({"quiet_end": [QUIET]})


class PreferencesOut(Schema):
    key = fields.String()
    language = fields.String()
    quiet_start = fields.Time(format="%H:%M")
    quiet_end = fields.Time(format="%H:%M")
    channels = fields.Function(lambda r: [contract.mask_url(u) for u in r.channels])
    sms_opt_out = fields.Boolean()
