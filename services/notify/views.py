"""Notification's HTTP side: the in-app inbox (read by the tracking page
and the volunteer portal with the service token), recipients' preferences,
and for staff the delivery log, retries, template previews and test
messages."""
from __future__ import annotations

import logging

from flask import Blueprint as WebBlueprint
from flask import current_app, jsonify, render_template, request
from flask.views import MethodView
from flask_smorest import abort
from jinja2 import TemplateError
from sqlalchemy import select

from services.common import contract
from services.common import extensions as ext
from services.common.auth import callers, public, require_caller, staff
from services.common.factory import ApiBlueprint, page_of
from services.common.i18n import N_, translate

from . import channels, delivery, messages, replies
from .models import Delivery, Notification, Recipient
from .schemas import (
    DeliveryOut,
    DeliveryQuery,
    InboxMessageOut,
    PreferencesIn,
    PreferencesOut,
    PreviewIn,
    PreviewOut,
    TestMessageIn,
)

log = logging.getLogger(__name__)

web = WebBlueprint("web", __name__)
api = ApiBlueprint("api", __name__, url_prefix="/api/v1", description="In-app inbox, preferences, delivery log")


@web.get("/")
@public
def home():
    return render_template("notify_home.html")


# Whose inbox a calling service may read: intake shows residents theirs on
# the tracking page, matching shows volunteers theirs in the portal. Any
# caller passes the guard; this narrower rule depends on the path.
INBOX_READERS = {"resident": "requests", "volunteer": "volunteers"}


def _inbox_reader(recipient: str) -> None:
    require_caller("admin", INBOX_READERS.get(recipient.partition(":")[0], "admin"))


@api.route("/inbox/<string:recipient>")
class Inbox(MethodView):
    @callers("admin", "requests", "volunteers")
    @api.response(200, InboxMessageOut(many=True))
    @api.paginate()
    def get(self, recipient, pagination_parameters):
        """A recipient's in-app messages, newest first, a page at a time
        (residents' for intake, volunteers' for matching); sign-in links
        never appear here."""
        _inbox_reader(recipient)
        return page_of(ext.db_session(), select(Notification).where(Notification.recipient_key == recipient)
                       .order_by(Notification.id.desc()), pagination_parameters)


@api.route("/inbox/<string:recipient>/<id:message_id>/read")
class InboxRead(MethodView):
    @callers("admin", "requests", "volunteers")
    @api.response(200, InboxMessageOut)
    def post(self, recipient, message_id):
        """Mark one in-app message read."""
        _inbox_reader(recipient)
        note = ext.db_session().get(Notification, message_id)
        if note is None or note.recipient_key != recipient:
            abort(404, message="no such message")
        note.read_at = note.read_at or delivery.utcnow()
        ext.db_session().commit()
        return note


@api.route("/recipients/<string:recipient>/preferences", parameters=[
    {"in": "path", "name": "recipient", "description": "kind:id, e.g. volunteer:12",
     "schema": {"type": "string", "pattern": contract.RECIPIENT_KEY.pattern}}])
class Preferences(MethodView):
    @callers("admin")
    @api.response(200, PreferencesOut)
    def get(self, recipient):
        """Language, quiet hours and channels (masked) of a recipient (admin token)."""
        row = ext.db_session().get(Recipient, recipient)
        if row is None:
            abort(404, message="no such recipient")
        return row

    @callers("admin")
    @api.arguments(PreferencesIn)
    @api.response(200, PreferencesOut)
    def put(self, data, recipient):
        """Set language, quiet hours (non-urgent messages wait), channels in order, and the
        SMS/call opt-out (退订) (admin token)."""
        if not contract.RECIPIENT_KEY.match(recipient):
            abort(422, errors={"path": {"recipient": ["Not a recipient key (kind:id)."]}})
        row = ext.db_session().get(Recipient, recipient) or Recipient.new(recipient, current_app.config["QUIET_HOURS"])
        for name, value in data.items():
            setattr(row, name, value)
        ext.db_session().add(row)
        ext.db_session().commit()
        return row


@api.route("/deliveries")
class Deliveries(MethodView):
    @staff
    @api.arguments(DeliveryQuery, location="query")
    @api.response(200, DeliveryOut(many=True))
    @api.paginate()
    def get(self, query, pagination_parameters):
        """The delivery log, newest first, by recipient, dedupe key, status
        and time (the staff console reads it with intake's token)."""
        stmt = select(Delivery).join(Notification).order_by(Delivery.id.desc())
        if "recipient" in query:
            stmt = stmt.where(Notification.recipient_key == query["recipient"])
        if "key" in query:
            stmt = stmt.where(Notification.dedupe_key.in_(query["key"]))
        if "status" in query:
            stmt = stmt.where(Delivery.status == query["status"])
        if "since" in query:
            stmt = stmt.where(Delivery.created_at >= query["since"])
        return page_of(ext.db_session(), stmt, pagination_parameters)


@api.route("/deliveries/<id:delivery_id>/retry")
class DeliveryRetry(MethodView):
    @callers("admin")
    @api.response(200, DeliveryOut)
    def post(self, delivery_id):
        """Try a dead delivery again, from the recipient's first channel."""
        row = ext.db_session().get(Delivery, delivery_id)
        if row is None:
            abort(404, message="no such delivery")
        if not delivery.reopen(row):
            abort(409, message="only a dead delivery is retried by hand")
        ext.db_session().commit()
        delivery.attempt(ext.database(), ext.outbox(), current_app.config, row.id)
        ext.db_session().expire_all()
        return ext.db_session().get(Delivery, delivery_id)


@api.route("/templates/preview")
class Preview(MethodView):
    @callers("admin")
    @api.arguments(PreviewIn)
    @api.response(200, PreviewOut)
    def post(self, data):
        """Render a template with a context, as it would be sent."""
        try:
            title, short, full = messages.render(data["template"], data["language"], data["context"])
        except TemplateError as exc:
            abort(422, errors={"json": {"context": [f"Cannot render: {exc}"]}})
        return {"title": title, "short": short, "full": full, "short_length": len(short)}


TEST_MESSAGE = N_("Linli test message: this channel receives notifications.")


@api.route("/test-message")
class TestMessage(MethodView):
    @callers("admin")
    @api.arguments(TestMessageIn)
    @api.response(200)
    def post(self, data):
        """Send a test message to a channel now and say what happened."""
        text = translate(TEST_MESSAGE, data["language"])
        error = channels.send(current_app.config, data["channel"], "Linli", text)
        log.info("test message", extra={"channel": contract.mask_url(data["channel"]), "error": error})
        return {"sent": error is None, "error": error, "channel": contract.mask_url(data["channel"])}


# The gateways' pushes: no cookie credentials, so no CSRF (the key stands in).
gateway_web = WebBlueprint("gateway", __name__)


@gateway_web.post("/sms/replies/<any(aliyun, tencent):gateway>")
@public  # the gateway's push; the key in its address stands for the signature it lacks
def sms_replies(gateway):
    """Residents' SMS replies as the gateway pushes them (replies.py). A
    wrong or missing key is a 404, as if replies were off; a body that is
    not the provider's shape gets its field errors in the provider's
    answer format, and nothing changes."""
    provider = replies.PROVIDERS[gateway]
    if not replies.key_ok(current_app.config, request.args.get("key")):
        abort(404)
    payload = request.get_json(silent=True)
    errors = {"json": ["A JSON body is required."]} if payload is None else provider["schema"].validate(payload)
    if errors:
        return jsonify(provider["bad"](errors)), 422
    body = provider["schema"].load(payload)
    session = ext.db_session()
    taken = [replies.receive(session, ext.outbox(), current_app.config, reply[provider["phone"]],
                             reply[provider["text"]])
             for reply in (body if isinstance(body, list) else [body])]
    session.commit()
    log.info("sms replies received", extra={"gateway": gateway, "taken_as": taken})
    return jsonify(provider["ok"])
