"""Notification's HTTP side: the in-app inbox (read by the tracking page
and the volunteer portal with the service token) and the delivery log for
staff."""
from __future__ import annotations

from flask import Blueprint as WebBlueprint
from flask import current_app, render_template
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from services.common.web import require_token

from .models import Delivery, Notification
from .schemas import DeliveryOut, DeliveryQuery, InboxMessageOut

web = WebBlueprint("web", __name__)
api = Blueprint("api", __name__, url_prefix="/api/v1", description="In-app inbox and delivery log")


def _session():
    return current_app.extensions["db"].Session


@web.get("/")
def home():
    return render_template("notify_home.html")


@api.before_request
def _services_only():
    # Before validation, so that a caller without the token learns nothing.
    require_token("SERVICE_TOKEN", "ADMIN_TOKEN")


@api.route("/inbox/<string:recipient>")
class Inbox(MethodView):
    @api.response(200, InboxMessageOut(many=True))
    def get(self, recipient):
        """A recipient's in-app messages, newest first."""
        return _session().scalars(
            select(Notification).where(Notification.recipient_key == recipient)
            .order_by(Notification.id.desc()).limit(100)
        ).all()


@api.route("/deliveries")
class Deliveries(MethodView):
    @api.arguments(DeliveryQuery, location="query")
    @api.response(200, DeliveryOut(many=True))
    def get(self, query):
        """The delivery log, newest first, by recipient and status."""
        stmt = select(Delivery).join(Notification).order_by(Delivery.id.desc()).limit(query["limit"])
        if "recipient" in query:
            stmt = stmt.where(Notification.recipient_key == query["recipient"])
        if "status" in query:
            stmt = stmt.where(Delivery.status == query["status"])
        return _session().scalars(stmt).unique().all()
