"""Test data and helpers shared by the test modules, so that each is written
once: a resident's request, intake's `volunteers.request_submitted` event as intake
sends it, a volunteer registered through the staff API, matching's World
(an app, a session of the test's own and a dispatcher at a chosen time) and
a volunteer signed in to the portal."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

from sqlalchemy import func, select

from services.common import contract
from services.volunteers import tasks as matching_tasks
from services.volunteers.dispatch import Dispatcher
from services.volunteers.models import Offer, OutboxMessage, ServiceRequest
from tests.conftest import ADMIN_TOKEN, REQUESTS_TOKEN, csrf_token

STAFF = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def console_for(app, role: str = "admin", grid: str | None = None, stairwells=(), staff_id: int = 1) -> dict:
    """The headers of the console reading `app`'s API for a signed-in staff
    member: intake's token and the member's claims (services.common.auth)."""
    from services.common.auth import STAFF_HEADER, StaffClaims, vouch

    with app.app_context():
        claims = vouch(StaffClaims(f"staff:{staff_id}", role, grid, tuple(stairwells)))
    return {"Authorization": f"Bearer {REQUESTS_TOKEN}", STAFF_HEADER: claims}


# --- staff in the console (intake) ---

PASSWORD = "correct horse battery"


def add_staff(app) -> None:
    """An admin, two grid leaders (G1, G2) and a hallway leader (3:1), all with PASSWORD."""
    from services.requests import staff

    with app.app_context():
        s = app.extensions["db"].Session
        staff.create(s, "admin", PASSWORD, "admin", "社区办公室")
        staff.create(s, "g1", PASSWORD, "grid_leader", "一网格", grid="G1")
        staff.create(s, "g2", PASSWORD, "grid_leader", "二网格", grid="G2")
        staff.create(s, "hall", PASSWORD, "hallway_leader", "3幢1单元楼道长", stairwells=["3:1"])
        s.commit()


def staff_sign_in(app, username, password=PASSWORD, client=None, addr="10.0.0.1"):
    """A staff member signs in to the console: (client, the answer)."""
    client = client or app.test_client()
    page = client.get("/staff/login", environ_base={"REMOTE_ADDR": addr})
    resp = client.post("/staff/login", data={"username": username, "password": password,
                                              "csrf_token": csrf_token(page.text)},
                       environ_base={"REMOTE_ADDR": addr})
    return client, resp


def staff_signed_in(app, username):
    client, resp = staff_sign_in(app, username)
    assert resp.status_code == 303, resp.text
    return client


# Friday 27 November 2026, 10:00 in Hangzhou.
NOW = datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)

# What a resident (or the desk for them) enters: the request form's and
# POST /api/v1/requests's fields.
RESIDENT = {
    "category": "haircut",
    "description": "想在家理个发，腿脚不方便",
    "building": "3",
    "unit": "1",
    "room": "302",
    "contact_name": "张桂兰",
    "contact_phone": "13812341234",
    "mode": "home",
    "urgency": "normal",
    "consent": True,
}


def resident_request(**changes) -> dict:
    """The JSON body of a resident's request, with `changes`."""
    return {**RESIDENT, **changes}


def resident_form(**changes) -> dict:
    """The same as the web form posts it (a ticked box is "true")."""
    return {**RESIDENT, "consent": "true", **changes}


NEW_VOLUNTEER = {"name": "王建国", "phone": "13900001111", "building": "3", "unit": "1",
                 "skills": ["haircut"], "capacity": 1, "channels": ["json://127.0.0.1:9/hook"]}
_phones = iter(range(13900002000, 13900009999))


def register(app, **over) -> int:
    """A volunteer registered through matching's staff API; their id."""
    body = {**NEW_VOLUNTEER, "phone": str(next(_phones)), **over}
    resp = app.test_client().post("/api/v1/volunteers", json=body, headers=STAFF)
    assert resp.status_code == 201, resp.json
    return resp.json["id"]


# Messages as their producers send them, every field the producer fills
# (tests/test_contract.py holds each to its real producer's output).


def submitted(category="haircut", building="3", unit="1", **over) -> dict:
    """Intake's volunteers.request_submitted (operations.emit_submitted)."""
    data = {"request_id": str(uuid.uuid4()), "category": category, "summary": "需要帮忙", "building": building,
            "unit": unit, "masked_phone": "138****1234", "mode": "home", "window_start": None,
            "window_end": None, "urgency": "normal", "elderly": False, "disability": False,
            "requester_digest": "0" * 64, "programme_ref": None, "preferred_volunteer_id": None, "first_to": None,
            **over}
    return contract.envelope(contract.REQUEST_SUBMITTED, data, source="requests")


def cancelled(request_id: str, reason: str = "不需要了") -> dict:
    """Intake's volunteers.request_cancelled (operations.cancel)."""
    return contract.envelope(contract.REQUEST_CANCELLED, {"request_id": request_id, "actor": "resident",
                                                          "reason": reason}, source="requests")


def feedback(request_id: str, rating: int = 5, thanks: bool = True, comment: str = "谢谢") -> dict:
    """Intake's volunteers.feedback_received (operations.give_feedback)."""
    return contract.envelope(contract.FEEDBACK_RECEIVED, {"request_id": request_id, "rating": rating,
                                                          "thanks": thanks, "comment": comment}, source="requests")


def status_changed(request_id: str, status: str = "assigned", **over) -> dict:
    """Matching's requests.status_changed (Dispatcher.tell_intake)."""
    data = {"request_id": request_id, "status": status, "actor": "volunteer:1", "note": "",
            "volunteer_name": "王建国", "place": None, "appointment_at": None, **over}
    return contract.envelope(contract.STATUS_CHANGED, data, source="volunteers")


class World:
    """One matching app, a session of the test's own (HTTP requests to the
    app keep theirs), and a dispatcher at a chosen time."""

    def __init__(self, app):
        self.app = app
        # From the same factory, so the outbox's after-commit publish applies.
        self.session = app.extensions["db"].Session.session_factory()

    def at(self, moment: datetime) -> Dispatcher:
        return Dispatcher(self.session, self.app.extensions["outbox"], self.app.config, now=moment)

    def receive(self, message, moment=NOW) -> ServiceRequest:
        _, data = contract.open_envelope(contract.REQUEST_SUBMITTED, message)
        req = self.at(moment).receive(data)
        self.session.commit()
        return req

    def sweep(self, moment) -> dict:
        return matching_tasks.committed_sweep(self.at(moment))

    def offers(self, request_id=None):
        q = select(Offer).order_by(Offer.id)
        if request_id:
            q = q.where(Offer.request_id == request_id)
        self.session.expire_all()
        return self.session.scalars(q).all()

    def events(self, task_name):
        rows = self.session.scalars(select(OutboxMessage).where(OutboxMessage.task_name == task_name)
                                    .order_by(OutboxMessage.created_at)).all()
        return [r.envelope["data"] for r in rows]

    def offer_path(self, offer) -> str:
        """The offer's link, as its message carried it (only a hash of the token is stored)."""
        [url] = [e["context"]["offer_url"] for e in self.events(contract.NOTIFY_SEND)
                 if e["template"] == "offer" and e["dedupe_key"] == f"offer:{offer.id}"]
        return "/offers/" + url.rsplit("/offers/", 1)[1]

    def count(self, model):
        return self.session.scalar(select(func.count()).select_from(model))


def login_links(world: World) -> list[str]:
    """The portal sign-in links matching has sent, oldest first."""
    world.session.expire_all()
    rows = world.session.scalars(select(OutboxMessage).where(OutboxMessage.task_name == contract.NOTIFY_SEND)).all()
    return [r.envelope["data"]["context"]["login_url"] for r in rows if r.envelope["data"]["template"] == "magic_link"]


def sign_in(world: World, client, phone: str):
    """A volunteer signs in to the portal by the link sent to them: (link path, answer)."""
    page = client.get("/login").get_data(as_text=True)
    resp = client.post("/login", data={"phone": phone, "csrf_token": csrf_token(page)})
    assert resp.status_code == 200
    link = login_links(world)[-1]
    path = re.sub(r"^https?://[^/]+", "", link)
    confirm = client.get(path).get_data(as_text=True)
    return path, client.post(path, data={"csrf_token": csrf_token(confirm)})


# --- the staff console's reads of matching ---


class _Answer:
    """What services.common.web reads of a `requests` response."""

    def __init__(self, resp):
        self.status_code, self.headers, self._json = resp.status_code, resp.headers, resp.get_json(silent=True)
        self._data = self.content = resp.data  # a download (web.read_download)

    def iter_content(self, chunk_size):
        """A download's body, a chunk at a time (a streamed read)."""
        for start in range(0, len(self._data), chunk_size):
            yield self._data[start:start + chunk_size]

    def raise_for_status(self):
        from services.common import web

        if self.status_code >= 400:
            raise web.http.HTTPError(f"{self.status_code}")

    def json(self):
        if self._json is None:
            raise ValueError("not JSON")
        return self._json


def console_reads(monkeypatch, matching_app) -> None:
    """The console's reads of matching's API (services.common.web) answered
    by `matching_app` in process, with the headers the console really sends
    (its token and the signed-in member's claims)."""
    from services.common import web

    client = matching_app.test_client()

    def get(url, headers, timeout, stream=False):
        path = url.split("://", 1)[1].split("/", 1)[1]
        return _Answer(client.get("/" + path, headers=headers))

    monkeypatch.setattr(web.http, "get", get)


def service_reads(monkeypatch, console_app, **apps) -> None:
    """The console's reads of other services answered in process, each by
    its own app: service_reads(mp, intake, community=app, volunteers=app)."""
    from services.common import web

    clients = {console_app.config[f"{name.upper()}_API_URL"]: app.test_client() for name, app in apps.items()}

    def get(url, headers, timeout):
        base = next((b for b in clients if url.startswith(b + "/")), None)
        if base is None:  # a service the test does not run: unreachable, as in production
            raise web.http.ConnectionError(url)
        return _Answer(clients[base].get(url[len(base):], headers=headers))

    monkeypatch.setattr(web.http, "get", get)


def outbox_messages(app, task_name) -> list[dict]:
    """The envelopes `app` staged for `task_name`, oldest first."""
    from services.requests.models import OutboxMessage as IntakeOutbox

    with app.app_context():
        rows = app.extensions["db"].Session.scalars(
            select(IntakeOutbox).where(IntakeOutbox.task_name == task_name).order_by(IntakeOutbox.created_at)).all()
        return [r.envelope for r in rows]
