"""The office in the console (办公): staff accounts and Open311 keys
(intake's own), stations, weekly sessions and service hours (matching's,
asked for by task and read back through matching's API) — who may open
what, the rules (sessions end, the last admin stays), and each task from
the console's outbox through matching's real consumer."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.common import contract
from services.common.clock import SetClock
from services.requests.models import Open311Key, OutboxMessage, StaffAudit, StaffMember
from services.volunteers.models import Assignment, CoinEntry, HoursEntry, Station, StationSession
from tests.conftest import csrf_token
from tests.factories import NOW, World, add_staff, register, staff_sign_in, staff_signed_in, submitted


@pytest.fixture
def app(make_app):
    return make_app("requests", setup=add_staff)


class Answer:
    """What `requests` gives the console, from a Flask test client's answer."""

    def __init__(self, resp):
        self.status_code, self.headers, self._resp = resp.status_code, resp.headers, resp

    def raise_for_status(self):
        if self.status_code >= 400:
            from services.common import web
            raise web.http.HTTPError(f"{self.status_code}")

    def json(self):
        return self._resp.get_json()


@pytest.fixture
def matching(make_app, monkeypatch, backend):
    """Matching's app, answering the console's reads in-process (on SQLite
    and on PostgreSQL: times and hours are the columns that differ)."""
    from services.common import web

    app = make_app("volunteers", backend=backend)
    client = app.test_client()

    def get(url, headers, timeout):
        return Answer(client.get("/" + url.split("://", 1)[1].split("/", 1)[1], headers=headers))

    monkeypatch.setattr(web.http, "get", get)
    return app


def post(client, page_path, path, **form):
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    return client.post(path, data={**form, "csrf_token": csrf_token(page.text)})


def sent(app, task_name) -> list[dict]:
    with app.app_context():
        rows = app.extensions["db"].Session.scalars(select(OutboxMessage).where(
            OutboxMessage.task_name == task_name).order_by(OutboxMessage.created_at)).all()
        return [r.envelope for r in rows]


def deliver(app, matching, task_name) -> list[str]:
    """Each of intake's messages of this task, handed to matching's real consumer, twice."""
    outcomes = []
    with matching.app_context():
        task = matching.extensions["celery"].tasks[task_name]
        for env in sent(app, task_name):
            outcomes += [task.apply(args=[env]).get(), task.apply(args=[env]).get()]
    return outcomes


def member(app, username) -> StaffMember:
    with app.app_context():
        s = app.extensions["db"].Session
        found = s.scalar(select(StaffMember).where(StaffMember.username == username))
        s.expunge_all()
        return found


# --- who may open what ---


@pytest.mark.parametrize("path", ["/staff/office/staff", "/staff/office/keys", "/staff/office/staff/1"])
def test_staff_accounts_and_keys_are_for_admins_only(app, path):
    assert staff_signed_in(app, "admin").get(path).status_code == 200
    for who in ("g1", "hall"):
        assert staff_signed_in(app, who).get(path).status_code == 403


def test_stations_and_hours_are_read_by_grid_leaders_and_hidden_from_hallway_leaders(app, matching):
    g1, hall = staff_signed_in(app, "g1"), staff_signed_in(app, "hall")
    for path in ("/staff/office", "/staff/office/stations", "/staff/office/hours"):
        assert g1.get(path).status_code == 200
        assert hall.get(path).status_code == 403
    page = g1.get("/staff/office/stations").text
    assert "/sessions/new" not in page and "/remove" not in page
    assert g1.get("/staff/office/stations/1/sessions/new").status_code == 403
    # Changes are the office's: a grid leader's post is refused before anything is sent.
    token = csrf_token(g1.get("/staff/office/hours").text)
    assert g1.post("/staff/office/hours/1/confirm", data={"csrf_token": token}).status_code == 403
    assert g1.post("/staff/office/stations", data={"csrf_token": token, "code": "x", "name": "x",
                                                   "place": "x"}).status_code == 403
    assert not sent(app, contract.HOURS_REVIEW) and not sent(app, contract.STATION_CHANGE)
    assert 'href="/staff/office"' in g1.get("/staff/").text
    assert 'href="/staff/office"' not in hall.get("/staff/").text


def test_every_office_form_needs_its_csrf_token(app):
    admin = staff_signed_in(app, "admin")
    for path in ("/staff/office/staff", "/staff/office/keys", "/staff/office/staff/2/active",
                 "/staff/office/stations", "/staff/office/hours/1/confirm"):
        assert admin.post(path, data={"name": "x"}).status_code == 400


# --- staff accounts ---


def test_admin_creates_an_account_with_a_one_time_password_and_it_signs_in(app):
    admin = staff_signed_in(app, "admin")
    resp = post(admin, "/staff/office/staff", "/staff/office/staff", username="Hall-5-2", display_name="5幢2单元楼道长",
                role="hallway_leader", grid="", stairwells="5:2, 5:1")
    assert resp.status_code == 200
    password = resp.text.split('id="one-time-password">')[1].split("<")[0]
    assert len(password) == 16
    created = member(app, "hall-5-2")
    assert created.stairwells == ["5:2", "5:1"] and created.password_hash.startswith("$argon2id$")
    assert password not in admin.get("/staff/office/staff").text  # shown once
    _, signed = staff_sign_in(app, "hall-5-2", password)
    assert signed.status_code == 303
    with app.app_context():
        [row] = app.extensions["db"].Session.scalars(select(StaffAudit)).all()
        assert (row.action, row.target, row.actor) == ("created", created.actor, member(app, "admin").actor)
        assert password not in row.detail


def test_account_form_errors_field_by_field(app):
    admin = staff_signed_in(app, "admin")
    resp = post(admin, "/staff/office/staff", "/staff/office/staff", username="x", display_name="",
                role="grid_leader", grid="G9", stairwells="", password="short")
    assert resp.status_code == 422
    for field in ("username", "display_name", "grid", "password"):
        assert f'id="{field}-error"' in resp.text
    taken = post(admin, "/staff/office/staff", "/staff/office/staff", username="g1", display_name="x",
                 role="hallway_leader", stairwells="99:1")
    assert taken.status_code == 422 and 'id="stairwells-error"' in taken.text
    taken = post(admin, "/staff/office/staff", "/staff/office/staff", username="G1", display_name="x",
                 role="grid_leader", grid="G2")
    assert taken.status_code == 409 and 'id="username-error"' in taken.text
    assert member(app, "g1").grid == "G1"


def test_reset_password_and_role_change_and_deactivation_end_the_members_sessions(app):
    admin = staff_signed_in(app, "admin")
    g1 = staff_signed_in(app, "g1")
    gid = member(app, "g1").id
    page = f"/staff/office/staff/{gid}"

    typed = post(admin, page, f"{page}/password", password="a new long password")
    assert typed.status_code == 200 and 'id="one-time-password"' not in typed.text
    assert g1.get("/staff/").status_code == 302  # signed out
    _, again = staff_sign_in(app, "g1", "a new long password")
    assert again.status_code == 303
    generated = post(admin, page, f"{page}/password", password="")
    assert 'id="one-time-password"' in generated.text
    assert post(admin, page, f"{page}/password", password="short").status_code == 422

    g2 = staff_signed_in(app, "g2")
    g2_id = member(app, "g2").id
    moved = post(admin, f"/staff/office/staff/{g2_id}", f"/staff/office/staff/{g2_id}/scope", role="grid_leader",
                 grid="G1")
    assert moved.status_code == 303 and member(app, "g2").grid == "G1"
    assert g2.get("/staff/").status_code == 302
    g2 = staff_signed_in(app, "g2")
    off = post(admin, f"/staff/office/staff/{g2_id}", f"/staff/office/staff/{g2_id}/active", active="0")
    assert off.status_code == 303 and not member(app, "g2").active
    assert g2.get("/staff/").status_code == 302
    assert staff_sign_in(app, "g2")[1].status_code == 401
    on = post(admin, f"/staff/office/staff/{g2_id}", f"/staff/office/staff/{g2_id}/active", active="1")
    assert on.status_code == 303 and staff_sign_in(app, "g2")[1].status_code == 303
    with app.app_context():
        actions = app.extensions["db"].Session.scalars(select(StaffAudit.action).order_by(StaffAudit.id)).all()
    assert actions == ["password_reset", "password_reset", "role_changed", "deactivated", "reactivated"]


def test_an_admin_cannot_lock_themself_out_nor_remove_the_last_admin(app):
    admin = staff_signed_in(app, "admin")
    aid = member(app, "admin").id
    page = f"/staff/office/staff/{aid}"
    assert post(admin, page, f"{page}/active", active="0").status_code == 409
    assert post(admin, page, f"{page}/scope", role="grid_leader", grid="G1").status_code == 409
    assert member(app, "admin").active and member(app, "admin").role == "admin"
    # With a second admin, the first may be changed by the second, but not the last one left.
    gid = member(app, "g1").id
    assert post(admin, f"/staff/office/staff/{gid}", f"/staff/office/staff/{gid}/scope",
                role="admin").status_code == 303
    second = staff_signed_in(app, "g1")
    assert post(second, page, f"{page}/active", active="0").status_code == 303
    assert post(second, f"/staff/office/staff/{gid}", f"/staff/office/staff/{gid}/active",
                active="0").status_code == 409  # themself, and the last admin
    with app.app_context():
        from services.requests import staff
        assert staff.active_admins(app.extensions["db"].Session) == 1


# --- Open311 keys ---


def test_a_key_is_shown_once_never_again_and_can_be_revoked(app):
    admin = staff_signed_in(app, "admin")
    resp = post(admin, "/staff/office/keys", "/staff/office/keys", name="12345热线")
    assert resp.status_code == 200
    key = resp.text.split('id="new-key">')[1].split("<")[0]
    assert len(key) >= 32
    listing = admin.get("/staff/office/keys").text
    assert "12345热线" in listing and key not in listing
    with app.app_context():
        row = app.extensions["db"].Session.scalar(select(Open311Key))
        assert row.key_hash != key and row.revoked_at is None
        key_id = row.id
    client = app.test_client()
    def full(k):  # noqa: E306
        return client.get(f"/open311/v2/requests.json?api_key={k}")
    assert full(key).status_code == 200
    revoked = post(admin, "/staff/office/keys", f"/staff/office/keys/{key_id}/revoke")
    assert revoked.status_code == 303
    with app.app_context():
        assert app.extensions["db"].Session.get(Open311Key, key_id).revoked_at is not None
    assert "12345热线" in admin.get("/staff/office/keys").text
    assert post(admin, "/staff/office/keys", "/staff/office/keys", name="").status_code == 422


# --- stations and weekly sessions, through matching ---


def test_station_and_session_changes_go_to_matching_by_task_once_each(app, matching):
    vid = register(matching, skills=["haircut", "sharpening"])
    admin = staff_signed_in(app, "admin")
    page = "/staff/office/stations"
    resp = post(admin, page, page, name="二号服务站", place="社区中心二楼", code="hall-2", lead_volunteer_id=str(vid))
    assert resp.status_code == 303
    waiting = admin.get(page).text
    assert 'id="change-sent"' in waiting and "二号服务站" not in waiting
    assert deliver(app, matching, contract.STATION_CHANGE) == ["done", "duplicate"]
    arrived = admin.get(page).text
    assert "二号服务站" in arrived and 'id="change-arrived"' in arrived
    assert 'id="change-sent"' not in admin.get(page).text  # said once
    with matching.app_context():
        station = matching.extensions["db"].Session.scalar(select(Station).where(Station.code == "hall-2"))
        station_id = station.id
        assert station.lead_volunteer_id == vid

    new = f"/staff/office/stations/{station_id}/sessions/new"
    assert post(admin, new, new, category="haircut", weekday="5", start="09:00", end="11:00",
                volunteer_id=str(vid), slots="4").status_code == 303
    assert deliver(app, matching, contract.STATION_CHANGE)[-2:] == ["done", "duplicate"]
    with matching.app_context():
        sess = matching.extensions["db"].Session.scalar(select(StationSession))
        assert (sess.weekday, str(sess.start_time), sess.slots, sess.volunteer_id) == (5, "09:00:00", 4, vid)
        sid = sess.id

    edit = f"/staff/office/stations/{station_id}/sessions/{sid}"
    assert 'value="09:00"' in admin.get(edit).text
    assert post(admin, edit, edit, category="sharpening", weekday="6", start="14:00", end="16:30",
                volunteer_id=str(vid), slots="2").status_code == 303
    assert 'id="change-sent"' in admin.get(page).text
    assert deliver(app, matching, contract.STATION_CHANGE)[-2:] == ["done", "duplicate"]
    shown = admin.get(page).text
    assert "14:00–16:30" in shown and 'id="change-arrived"' in shown
    with matching.app_context():
        s = matching.extensions["db"].Session
        sess = s.get(StationSession, sid)
        assert (sess.category, sess.weekday, str(sess.end_time), sess.slots) == ("sharpening", 6, "16:30:00", 2)
        assert s.scalar(select(StationSession.id).where(StationSession.id != sid)) is None

    assert post(admin, page, f"{edit}/remove").status_code == 303
    assert deliver(app, matching, contract.STATION_CHANGE)[-2:] == ["done", "duplicate"]
    with matching.app_context():
        assert not matching.extensions["db"].Session.get(StationSession, sid).active
    assert "14:00–16:30" not in admin.get(page).text
    assert [e["data"]["action"] for e in sent(app, contract.STATION_CHANGE)] == [
        "add_station", "add_session", "edit_session", "remove_session"]


def test_a_bad_session_is_refused_field_by_field_and_nothing_is_sent(app, matching):
    vid = register(matching, skills=["haircut"])
    with matching.app_context():
        s = matching.extensions["db"].Session
        s.add(Station(code="hall-9", name="九号站", place="九幢"))
        s.commit()
        station_id = s.scalar(select(Station.id).where(Station.code == "hall-9"))
    admin = staff_signed_in(app, "admin")
    new = f"/staff/office/stations/{station_id}/sessions/new"
    resp = post(admin, new, new, category="parking", weekday="9", start="25:00", end="",
                volunteer_id="", slots="0")
    assert resp.status_code == 422
    for field in ("category", "weekday", "start", "end", "volunteer_id", "slots"):
        assert f'id="{field}-error"' in resp.text, field
    order = post(admin, new, new, category="haircut", weekday="1", start="11:00", end="10:00",
                 volunteer_id=str(vid), slots="3")
    assert order.status_code == 422 and 'id="end-error"' in order.text
    skill = post(admin, new, new, category="sharpening", weekday="1", start="09:00", end="10:00",
                 volunteer_id=str(vid), slots="3")
    assert skill.status_code == 422 and 'id="volunteer_id-error"' in skill.text
    station = post(admin, "/staff/office/stations", "/staff/office/stations", name="", place="x", code="Bad Code")
    assert station.status_code == 422 and 'id="code-error"' in station.text and 'id="name-error"' in station.text
    assert not sent(app, contract.STATION_CHANGE)


# --- service hours ---


def hours_entry(matching) -> int:
    world = World(matching)
    register(matching)
    req = world.receive(submitted())
    world.at(NOW).accept(world.offers(req.id)[0])
    task = world.session.scalar(select(Assignment).where(Assignment.request_id == req.id))
    world.at(NOW + timedelta(minutes=5)).start(task)
    entry = world.at(NOW + timedelta(minutes=65)).complete(task, 60, "理好了")
    world.session.commit()
    entry_id = entry.id
    world.session.close()
    return entry_id


def test_hours_are_confirmed_and_corrected_through_matchings_time_bank(app, matching):
    first, second = hours_entry(matching), hours_entry(matching)
    admin = staff_signed_in(app, "admin")
    page = "/staff/office/hours"
    listing = admin.get(page).text
    assert f'data-entry="{first}"' in listing and f'data-entry="{second}"' in listing
    assert post(admin, page, f"{page}/{first}/confirm").status_code == 303
    bad = post(admin, page, f"{page}/{second}/correct", hours="1.3", reason="")
    assert bad.status_code == 422
    assert f'id="hours-{second}-error"' in bad.text and f'id="reason-{second}-error"' in bad.text
    assert post(admin, page, f"{page}/{second}/correct", hours="1.5", reason="路上多花了半小时").status_code == 303
    assert 'id="change-sent"' in admin.get(page).text
    assert deliver(app, matching, contract.HOURS_REVIEW) == ["done", "duplicate", "done", "duplicate"]
    with matching.app_context():
        s = matching.extensions["db"].Session
        one, two = s.get(HoursEntry, first), s.get(HoursEntry, second)
        staff_actor = member(app, "admin").actor
        assert (one.status, one.hours, one.confirmed_by) == ("confirmed", Decimal("1.0"), staff_actor)
        assert (two.status, two.hours, two.corrected_from, two.corrected_reason) == (
            "confirmed", Decimal("1.5"), Decimal("1.0"), "路上多花了半小时")
        coins = s.scalars(select(CoinEntry.amount).order_by(CoinEntry.id)).all()
        assert coins == [Decimal("1.0"), Decimal("1.5")]  # one credit per entry, however often it arrives
    app.extensions["clock"] = SetClock(NOW + timedelta(hours=2))  # the month the services were completed in
    after = admin.get(page + "?sent=1").text
    assert f'data-entry="{first}"' not in after and 'id="change-arrived"' in after
    # The record on the page: who confirmed, and the correction with its reason.
    done = after.split('id="confirmed"')[1]
    assert f'data-confirmed="{first}"' in done and f'data-confirmed="{second}"' in done
    assert "社区办公室" in done and "路上多花了半小时" in done and "1.0" in done


def test_grid_leaders_read_the_hours_of_their_grid_only(app, matching):
    hours_entry(matching)  # the volunteer lives in building 3, grid G1
    assert 'data-entry="' in staff_signed_in(app, "g1").get("/staff/office/hours").text
    g2 = staff_signed_in(app, "g2").get("/staff/office/hours").text
    assert 'data-entry="' not in g2
