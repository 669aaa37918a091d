"""What the notify API returns: inbox messages and the delivery log, with
channel URLs masked (they are secrets)."""
from marshmallow import Schema, fields, validate

from services.common import contract


class InboxMessageOut(Schema):
    id = fields.Integer()
    template = fields.String()
    title = fields.String()
    body = fields.String(attribute="short_body")
    urgent = fields.Boolean()
    read = fields.Function(lambda n: n.read_at is not None)
    created_at = fields.AwareDateTime()


class DeliveryQuery(Schema):
    recipient = fields.String(validate=validate.Length(1, 100))
    status = fields.String(validate=validate.OneOf(("queued", "sending", "failed", "sent", "dead")))
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 500))


class DeliveryOut(Schema):
    id = fields.Integer()
    recipient = fields.String(attribute="notification.recipient_key")
    dedupe_key = fields.String(attribute="notification.dedupe_key")
    template = fields.String(attribute="notification.template")
    channel = fields.Function(lambda d: contract.mask_url(d.channels[min(d.channel_index, len(d.channels) - 1)]))
    status = fields.String()
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    sent_at = fields.AwareDateTime(allow_none=True)
