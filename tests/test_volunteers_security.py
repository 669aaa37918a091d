"""Matching's security fixes: the offer link is not a key to the resident's
contact, portal sessions end everywhere at sign-out, nobody confirms their
own hours, an expired offer cannot be taken, roster files are bounded,
offer tokens are stored hashed, demo data can be removed, and the API's
lists come in pages."""
from __future__ import annotations

import hashlib
import io
import json
import re
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from time import time as wall_clock

import pytest
from alembic import command
from openpyxl import Workbook
from sqlalchemy import select, text

from services.common.clock import utcnow
from services.common.db import Database
from services.volunteers import VERSIONS
from services.volunteers import portal as volunteer_portal
from services.volunteers.models import (
    Assignment,
    Base,
    CoinEntry,
    HoursEntry,
    Station,
    StationSession,
    Volunteer,
)
from services.volunteers.timebank import TimeBank
from tests.conftest import csrf_token
from tests.factories import NOW, STAFF, World, register, sign_in, submitted

CONTACT = {"contact_name": "张桂兰", "contact_phone": "13812341234", "unit": "1", "room": "1502"}


@pytest.fixture
def matching(make_app, backend):
    return make_app("volunteers", backend=backend)


@pytest.fixture
def world(matching):
    w = World(matching)
    yield w
    w.session.close()


@pytest.fixture
def intake(monkeypatch):
    """Intake's internal API as the offer page and portal read it: the
    contact for any reader (intake checks the reader; here we check who
    matching lets see it), and an empty inbox."""
    reads = []

    def read_service(key, path):
        reads.append(path)
        return dict(CONTACT) if path.endswith(tuple(f"reader=volunteer:{i}" for i in range(1, 100))) \
            and "/contact" in path else []

    monkeypatch.setattr(volunteer_portal, "read_service", read_service)
    return reads


def shows_contact(resp) -> bool:
    page = resp.get_data(as_text=True)
    return CONTACT["contact_phone"] in page or CONTACT["contact_name"] in page or CONTACT["room"] in page


# --- 3. the offer link is not a key to the resident's contact ---


def test_the_offer_link_shows_the_contact_only_to_the_assignee_signed_in_while_the_task_is_live(world, intake):
    register(world.app, phone="13900007777")
    register(world.app, phone="13900006666", building="40")
    world.receive(submitted(), utcnow())
    offer = world.offers()[0]
    link = world.offer_path(offer)

    # A preview (another browser, no session): the offer, masked; nothing changes, nobody is signed in.
    preview = world.app.test_client()
    page = preview.get(link)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "138****1234" in page.get_data(as_text=True) and not shows_contact(page)
    assert world.offers()[0].status == "open"
    assert preview.get("/me").status_code == 303

    # The volunteer accepts with the link: that POST signs them in, and they see the contact.
    phone = world.app.test_client()
    form = phone.get(link).get_data(as_text=True)
    resp = phone.post(link, data={"decision": "accept", "csrf_token": csrf_token(form)})
    assert resp.status_code == 303 and resp.headers["Cache-Control"] == "no-store"
    mine = phone.get(resp.headers["Location"])
    assert mine.headers["Cache-Control"] == "no-store" and shows_contact(mine)
    portal = phone.get("/me")
    assert portal.status_code == 200 and portal.headers["Cache-Control"] == "no-store" and shows_contact(portal)

    # The same link elsewhere: no contact — without a session, or with another volunteer's.
    assert not shows_contact(preview.get(link))
    stranger = world.app.test_client()
    sign_in(world, stranger, "13900006666")
    assert not shows_contact(stranger.get(link))
    assert stranger.get(f"/me/offers/{offer.id}").status_code == 404

    # Completed: the contact is gone, even for the volunteer.
    task = world.session.scalar(select(Assignment))
    world.at(utcnow()).complete(task, 30, "")
    world.session.commit()
    assert not shows_contact(phone.get(link))
    assert not shows_contact(phone.get("/me"))
    assert all(f"reader=volunteer:{offer.volunteer_id}" in p for p in intake if "/contact" in p)


def test_a_get_of_the_offer_link_never_signs_in_and_a_decline_does_not_either(world, intake):
    register(world.app, phone="13900007777")
    world.receive(submitted(), utcnow())
    link = world.offer_path(world.offers()[0])
    client = world.app.test_client()
    page = client.get(link).get_data(as_text=True)
    with client.session_transaction() as sess:
        assert "volunteer_id" not in sess  # the session holds a CSRF token, nobody signed in
    client.post(link, data={"decision": "decline", "csrf_token": csrf_token(page)})
    assert world.offers()[0].status == "declined"
    with client.session_transaction() as sess:
        assert "volunteer_id" not in sess
    assert client.get("/me").status_code == 303


def test_the_portal_opens_its_offers_by_id_for_their_volunteer_only(world, intake):
    register(world.app, phone="13900007777")
    world.receive(submitted(), utcnow())
    offer = world.offers()[0]
    client = world.app.test_client()
    sign_in(world, client, "13900007777")
    page = client.get(f"/me/offers/{offer.id}")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store" and not shows_contact(page)
    resp = client.post(f"/me/offers/{offer.id}", data={"decision": "accept",
                                                       "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert resp.status_code == 303 and "outcome=accepted" in resp.headers["Location"]
    assert shows_contact(client.get(resp.headers["Location"]))


# --- 8. portal sessions: their configured lifetime, and sign-out ends every copy ---


def session_cookie(client, app):
    return client.get_cookie(app.config["SESSION_COOKIE_NAME"])


def test_a_portal_session_lasts_the_configured_days(make_app):
    app = make_app("volunteers", PORTAL_SESSION_DAYS=7)
    world = World(app)
    try:
        register(app, phone="13900007777")
        client = app.test_client()
        _, resp = sign_in(world, client, "13900007777")
        cookie = next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith("linli_volunteers_session="))
        expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", cookie).group(1))
        days = (expires.timestamp() - wall_clock()) / 86400
        assert 6.9 < days <= 7.01
    finally:
        world.session.close()


def test_signing_out_ends_a_copied_session_cookie_too(world, intake):
    register(world.app, phone="13900007777")
    client = world.app.test_client()
    sign_in(world, client, "13900007777")
    copy = world.app.test_client()
    copy.set_cookie(world.app.config["SESSION_COOKIE_NAME"], session_cookie(client, world.app).value)
    assert copy.get("/me").status_code == 200  # a copied cookie works while the session is live
    token = csrf_token(client.get("/me").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert copy.get("/me").status_code == 303
    assert client.get("/me").status_code == 303
    # Signing in again starts a new session; the old copy stays dead.
    sign_in(world, client, "13900007777")
    assert client.get("/me").status_code == 200
    assert copy.get("/me").status_code == 303


def test_deactivation_ends_portal_sessions_for_good(world, intake):
    vid = register(world.app, phone="13900007777")
    client = world.app.test_client()
    sign_in(world, client, "13900007777")
    assert client.get("/me").status_code == 200
    api = world.app.test_client()
    assert api.patch(f"/api/v1/volunteers/{vid}", json={"active": False}, headers=STAFF).status_code == 200
    assert api.patch(f"/api/v1/volunteers/{vid}", json={"active": True}, headers=STAFF).status_code == 200
    # Active again, but the session from before the deactivation does not come back.
    assert client.get("/me").status_code == 303
    # The console's deactivation (a staff action through the outbox) ends sessions too.
    sign_in(world, client, "13900007777")
    assert client.get("/me").status_code == 200
    world.at(utcnow()).staff_action({"action": "deactivate", "actor": "staff:1", "volunteer_id": vid})
    world.at(utcnow()).staff_action({"action": "activate", "actor": "staff:1", "volunteer_id": vid})
    world.session.commit()
    assert client.get("/me").status_code == 303


# --- 11. nobody confirms their own hours ---


def station_led_by_its_barber(world):
    lead = register(world.app, phone="13900007777")
    other = register(world.app, phone="13900006666")
    station = Station(code="cuilinli", name="翠邻里服务站", place="3幢一楼", lead_volunteer_id=lead)
    world.session.add(station)
    world.session.flush()
    from datetime import time
    for vid, weekday in ((lead, 5), (other, 6)):
        world.session.add(StationSession(station_id=station.id, category="haircut", weekday=weekday,
                                         start_time=time(9), end_time=time(11), volunteer_id=vid, slots=1))
    world.session.commit()
    entries = {}
    for _ in range(2):
        req = world.receive(submitted(mode="station"), utcnow())
        task = world.session.scalar(select(Assignment).where(Assignment.request_id == req.id))
        entries[task.volunteer_id] = world.at(utcnow()).complete(task, 30, "")
        world.session.commit()
    return lead, other, entries


def test_a_station_lead_cannot_confirm_their_own_hours_or_correction(world, intake):
    lead, other, entries = station_led_by_its_barber(world)
    own, theirs = entries[lead], entries[other]
    client = world.app.test_client()
    sign_in(world, client, "13900007777")
    token = csrf_token(client.get("/me").get_data(as_text=True))
    # A correction of their own, then an attempt to confirm it themselves.
    assert client.post(f"/me/hours/{own.id}/correction", data={"hours": "5.0", "reason": "多算点",
                                                               "csrf_token": token}).status_code == 303
    page = client.get("/me").get_data(as_text=True)
    assert f"/me/hours/{own.id}/confirm" not in page and f"/me/hours/{theirs.id}/confirm" in page
    assert client.post(f"/me/hours/{own.id}/confirm", data={"csrf_token": token}).status_code == 403
    world.session.expire_all()
    assert world.session.get(HoursEntry, own.id).status == "correction"
    assert world.session.scalar(select(CoinEntry).where(CoinEntry.volunteer_id == lead)) is None
    # Others' hours at their station: yes.
    assert client.post(f"/me/hours/{theirs.id}/confirm", data={"csrf_token": token}).status_code == 303
    world.session.expire_all()
    assert world.session.get(HoursEntry, theirs.id).status == "confirmed"
    # Staff (admin token) may confirm anyone's, the lead's included.
    resp = world.app.test_client().post(f"/api/v1/hours/{own.id}/confirm", json={"by": "网格员张"}, headers=STAFF)
    assert resp.status_code == 200 and resp.json["status"] == "confirmed"


def test_the_time_bank_refuses_a_self_confirmation(world):
    register(world.app)
    world.receive(submitted())
    world.at(NOW).accept(world.offers()[0])
    task = world.session.scalar(select(Assignment))
    entry = world.at(NOW + timedelta(hours=1)).complete(task, 60, "")
    world.session.commit()
    d = TimeBank(world.session, now=NOW + timedelta(hours=2))
    assert d.confirm_hours(entry, by=f"station-lead:{task.volunteer_id}", by_volunteer=task.volunteer_id) is False
    world.session.commit()
    assert entry.status == "pending" and d.coin_balance(task.volunteer_id) == 0
    assert d.confirm_hours(entry, by="staff", by_volunteer=None) is True


# --- 12. an expired offer cannot be accepted ---


def test_an_expired_offer_is_closed_before_the_sweep_marks_it(world):
    vid = register(world.app)
    world.receive(submitted())
    offer = world.offers()[0]
    late = offer.expires_at + timedelta(seconds=1)
    assert world.at(late).accept(offer) == "closed"
    world.session.commit()
    assert world.offers()[0].status == "open"  # left for the sweep, which expires it and offers onwards
    assert world.count(Assignment) == 0 and world.session.get(Volunteer, vid).active_tasks == 0
    assert world.sweep(late)["expired"] == 1
    assert world.offers()[0].status == "expired"
    # Just before its time it is still taken.
    world.receive(submitted())
    fresh = [o for o in world.offers() if o.status == "open"][0]
    assert world.at(fresh.expires_at - timedelta(seconds=1)).accept(fresh) == "accepted"


def test_the_offer_page_answers_closed_for_an_expired_offer(world):
    register(world.app)
    world.receive(submitted())  # at NOW: long expired on the web's clock, not yet swept
    link = world.offer_path(world.offers()[0])
    client = world.app.test_client()
    page = client.get(link).get_data(as_text=True)
    assert 'value="accept"' not in page  # no form to take it
    token = csrf_token(client.get("/login").get_data(as_text=True))
    resp = client.post(link, data={"decision": "accept", "csrf_token": token})
    assert resp.status_code == 303 and "outcome=closed" in resp.headers["Location"]
    assert world.count(Assignment) == 0


# --- 13. roster files are bounded ---

HEADER = ["name", "phone", "building", "unit", "skills"]


def workbook(rows: int) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for i in range(rows):
        sheet.append([f"志愿者{i}", str(13911000000 + i), "3", "1", "haircut"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def post_roster(app, data: bytes, name: str):
    return app.test_client().post("/api/v1/volunteers/import?partial=true", headers=STAFF,
                                  data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def test_a_workbook_over_the_row_limit_is_refused_whole(matching):
    assert matching.config["ROSTER_MAX_ROWS"] == 5000
    resp = post_roster(matching, workbook(5001), "roster.xlsx")
    assert resp.status_code == 413 and "5000 rows" in resp.json["message"]
    assert world_count(matching, Volunteer) == 0


def world_count(app, model):
    with app.app_context():
        return len(app.extensions["db"].Session.scalars(select(model)).all())


def test_roster_bounds_are_configurable_for_rows_columns_size_and_unpacked_size(make_app):
    app = make_app("volunteers", ROSTER_MAX_ROWS=3, ROSTER_MAX_COLUMNS=6, ROSTER_MAX_BYTES=20_000,
                   ROSTER_MAX_UNPACKED_BYTES=200_000)
    assert post_roster(app, workbook(3), "roster.xlsx").json["imported"] == 3  # at the limit: fine
    assert post_roster(app, workbook(4), "roster.xlsx").status_code == 413
    csv_rows = ",".join(HEADER) + "\n" + "".join(f"李{i},{13922000000 + i},3,1,haircut\n" for i in range(4))
    resp = post_roster(app, csv_rows.encode(), "roster.csv")
    assert resp.status_code == 413 and "3 rows" in resp.json["message"]
    wide = ",".join(HEADER + ["a", "b"]) + "\n"
    assert "6 columns" in post_roster(app, wide.encode(), "roster.csv").json["message"]
    ragged = ",".join(HEADER) + "\n" + "李,13933000000,3,1,haircut,x,y\n"
    assert post_roster(app, ragged.encode(), "roster.csv").status_code == 413
    big = ",".join(HEADER) + "\n" + "#" * 30_000
    assert post_roster(app, big.encode(), "roster.csv").status_code == 413
    # A small zip that unpacks past the bound: refused before openpyxl reads it.
    book = Workbook()
    book.active.append(HEADER)
    for _ in range(2):  # highly compressible: a few kilobytes zipped, a quarter megabyte unpacked
        book.active.append(["x" * 30_000] * 4)
    out = io.BytesIO()
    book.save(out)
    assert len(out.getvalue()) < 20_000
    resp = post_roster(app, out.getvalue(), "roster.xlsx")
    assert resp.status_code == 413 and "unpacks" in resp.json["message"]
    assert world_count(app, Volunteer) == 3


def test_the_import_command_refuses_a_roster_over_the_limit(make_app, tmp_path):
    app = make_app("volunteers", ROSTER_MAX_ROWS=2)
    path = tmp_path / "roster.xlsx"
    path.write_bytes(workbook(3))
    result = app.test_cli_runner().invoke(args=["import-volunteers", str(path)])
    assert result.exit_code == 1 and "2 rows" in result.output
    assert world_count(app, Volunteer) == 0


# --- 17. offer tokens are stored hashed ---


def test_only_a_hash_of_the_offer_token_is_stored(world):
    register(world.app)
    world.receive(submitted(), utcnow())
    offer = world.offers()[0]
    token = world.offer_path(offer).rsplit("/", 1)[1]
    assert offer.token_hash == hashlib.sha256(token.encode()).hexdigest()
    row = world.session.execute(text("SELECT * FROM offer")).mappings().one()
    assert token not in json.dumps({k: str(v) for k, v in row.items()})
    assert world.app.test_client().get(f"/offers/{token}").status_code == 200
    assert world.app.test_client().get(f"/offers/{offer.token_hash}").status_code == 404  # the hash is no link


def test_the_migration_hashes_existing_offer_tokens_and_runs_both_ways(make_app, backend, tmp_path):
    app = make_app("volunteers", backend=backend)  # a fresh database of the backend, migrated
    db = Database(app.config["DATABASE_URL"])
    cfg = db.alembic_config(VERSIONS, Base.metadata)
    command.downgrade(cfg, "4c85f8c331cd")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO service_request (id, category, summary, building, unit, masked_phone, mode,"
                          " urgency, elderly, disability, status, received_at, escalation_level) VALUES"
                          " ('r1', 'haircut', 's', '3', '1', '138****1234', 'home', 'normal', false, false,"
                          " 'offered', :t, 0)"), {"t": datetime(2026, 11, 27)})
        conn.execute(text("INSERT INTO volunteer (name, display_name, phone, building, capacity, active_tasks,"
                          " active, channels, language, teams, offers_count, accepts_count, rating_sum,"
                          " rating_count, created_at) VALUES ('王', '王', '13900001111', '3', 1, 0, true, '[]',"
                          " 'zh-CN', '[]', 0, 0, 0, 0, :t)"), {"t": datetime(2026, 11, 27)})
        conn.execute(text("INSERT INTO offer (request_id, volunteer_id, token, status, reason, decline_reason,"
                          " created_at) VALUES ('r1', (SELECT id FROM volunteer), 'old-link-token', 'open', '', '',"
                          " :t)"), {"t": datetime(2026, 11, 27)})
    command.upgrade(cfg, "head")
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT token_hash FROM offer")).scalar() == \
            hashlib.sha256(b"old-link-token").hexdigest()
        assert conn.execute(text("SELECT session_epoch, demo FROM volunteer")).one() in ((0, False), (0, 0))
    with app.app_context():
        assert app.test_client().get("/offers/old-link-token").status_code == 200  # links sent before still work
    command.downgrade(cfg, "4c85f8c331cd")
    with db.engine.connect() as conn:
        assert len(conn.execute(text("SELECT token FROM offer")).scalar()) > 20  # a fresh token, not the hash
    command.upgrade(cfg, "head")
    db.engine.dispose()


# --- demo data, marked and removable ---


def test_demo_data_is_marked_and_removed_keeping_history(make_app):
    app = make_app("volunteers", DEMO=True)
    real = register(app, phone="13900007777")
    world = World(app)
    try:
        demo_ids = world.session.scalars(select(Volunteer.id).where(Volunteer.demo.is_(True))).all()
        assert len(demo_ids) == 60 and real not in demo_ids
        assert [s.demo for s in world.session.scalars(select(Station))] == [True]
        # One demo volunteer took part in a request: that history stays.
        req = world.receive(submitted(category="sharpening", building="40", unit="1"), utcnow())
        offer = world.offers(req.id)[0]
        assert world.at(utcnow()).accept(offer) == "accepted"
        world.session.commit()
        helper = offer.volunteer_id
        assert helper in demo_ids

        result = app.test_cli_runner().invoke(args=["remove-demo"])
        assert result.exit_code == 0, result.output
        world.session.expire_all()
        left = world.session.scalars(select(Volunteer).order_by(Volunteer.id)).all()
        assert [v.id for v in left] == sorted([real, helper])
        kept = world.session.get(Volunteer, helper)
        assert kept.active is False and kept.channels == [] and kept.skills == [] and kept.phone_digest is None
        assert not re.fullmatch(r"1[3-9]\d{9}", kept.phone) and kept.name == f"demo-{helper}"
        assert world.session.scalar(select(Assignment)).volunteer_id == helper  # the request's history holds
        assert world.session.scalars(select(Station)).all() == []
        assert world.session.get(Volunteer, real).active is True
        assert app.test_cli_runner().invoke(args=["remove-demo"]).exit_code == 0  # again: nothing more to do
        assert len(world.session.scalars(select(Volunteer)).all()) == 2
    finally:
        world.session.close()


# --- the API's lists come in pages, filtered in the database ---


def test_volunteer_lists_come_in_bounded_pages_with_the_stairwell_filter(matching):
    a = register(matching, building="3", unit="1", teams=["翠邻里"])
    b = register(matching, building="3", unit="2")
    c = register(matching, building="5", unit="1", teams=["夕阳红", "翠邻里"])
    d = register(matching, building="5", unit="2")
    client = matching.test_client()

    def get(query):
        resp = client.get(f"/api/v1/volunteers?{query}", headers=STAFF)
        assert resp.status_code == 200, resp.json
        return [v["id"] for v in resp.json], json.loads(resp.headers["X-Pagination"])

    ids, pages = get("page_size=3")
    assert ids == [a, b, c] and pages["total"] == 4 and pages["total_pages"] == 2 and pages["next_page"] == 2
    assert get("page_size=3&page=2")[0] == [d]
    assert get("")[1]["total"] == 4  # default page: 50
    assert client.get("/api/v1/volunteers?page_size=201", headers=STAFF).status_code == 422
    assert get("stairwell=3:1&stairwell=5:2")[0] == [a, d]
    assert get("building=3&unit=2")[0] == [b]
    ids, pages = get("team=翠邻里&page_size=1")
    assert ids == [a] and pages["total"] == 2
    assert get("team=翠邻里&page=2&page_size=1")[0] == [c]
    assert client.get("/api/v1/volunteers?stairwell=3", headers=STAFF).status_code == 422
    for path in ("/api/v1/stations", "/api/v1/hours"):
        resp = client.get(f"{path}?page_size=10", headers=STAFF)
        assert resp.status_code == 200 and json.loads(resp.headers["X-Pagination"])["total"] == 0
    assert client.get("/api/v1/hours?page_size=500", headers=STAFF).status_code == 422


# --- one staff identity across services (services.common.auth) ---


def test_the_console_reads_the_registry_only_as_a_signed_in_staff_members_scope(world, monkeypatch):
    """Intake's token alone opens nothing: the console must say whom it acts
    for, with claims signed by intake and at most a minute old, and matching
    answers within that staff member's grid or stairwells."""
    from services.common import auth
    from tests.conftest import REQUESTS_TOKEN
    from tests.factories import console_for

    app, client = world.app, world.app.test_client()
    near = register(app, building="3", unit="1")  # grid G1
    far = register(app, building="40", unit="1")  # grid G4
    ids = lambda headers, query="": [v["id"] for v in client.get(f"/api/v1/volunteers{query}", headers=headers).json]  # noqa: E731

    assert client.get("/api/v1/volunteers", headers={"Authorization": f"Bearer {REQUESTS_TOKEN}"}).status_code == 401
    forged = dict(console_for(app, "admin"))
    forged[auth.STAFF_HEADER] = forged[auth.STAFF_HEADER][:-2] + "xx"
    assert client.get("/api/v1/volunteers", headers=forged).status_code == 401

    grid_leader = console_for(app, "grid_leader", grid="G1")
    assert ids(grid_leader) == [near] and ids(grid_leader, "?grid=G4") == []
    assert client.get(f"/api/v1/volunteers/{far}", headers=grid_leader).status_code == 404
    assert ids(console_for(app, "hallway_leader", stairwells=["40:1"])) == [far]
    assert ids(console_for(app, "hallway_leader")) == []
    assert ids(console_for(app, "admin")) == ids(STAFF) == [near, far]

    # A request in G1: its grid leader sees candidates from the whole community;
    # another grid's leader does not see the request at all.
    req = world.receive(submitted(building="3", unit="1"))
    candidates = client.get(f"/api/v1/requests/{req.id}/candidates", headers=grid_leader).json
    assert {c["id"] for c in candidates} == {near, far}
    g4 = console_for(app, "grid_leader", grid="G4")
    assert client.get(f"/api/v1/requests/{req.id}/candidates", headers=g4).status_code == 404
    assert client.get(f"/api/v1/requests/{req.id}", headers=g4).status_code == 404
    assert client.get(f"/api/v1/requests/{req.id}", headers=grid_leader).status_code == 200

    monkeypatch.setattr(auth, "CLAIMS_SECONDS", -1)  # any claims are older than this
    assert client.get("/api/v1/volunteers", headers=console_for(app, "admin")).status_code == 401
