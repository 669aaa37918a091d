"""The volunteer portal: sign-in by an expiring single-use link sent
through the volunteer's channel, then offers, tasks, hours and coins —
each volunteer seeing only their own."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from services.common import contract
from services.common.clock import utcnow
from services.volunteers.models import Assignment, HoursEntry, LoginLink, OutboxMessage, Station, StationSession
from tests.conftest import csrf_token
from tests.factories import World, login_links, register, sign_in, submitted


@pytest.fixture
def world(make_app):
    w = World(make_app("volunteers"))
    yield w
    w.session.close()


def test_magic_link_sign_in_is_single_use_and_does_not_reveal_who_is_registered(world):
    register(world.app, phone="13900007777")
    client = world.app.test_client()
    assert client.get("/me").status_code == 303  # signed out: to the sign-in page
    page = client.get("/login").get_data(as_text=True)
    unknown = client.post("/login", data={"phone": "13900008888", "csrf_token": csrf_token(page)})
    assert login_links(world) == []
    page = client.get("/login").get_data(as_text=True)
    known = client.post("/login", data={"phone": "13900007777", "csrf_token": csrf_token(page)})
    assert known.get_data(as_text=True) == unknown.get_data(as_text=True)  # the same answer either way
    path, resp = sign_in(world, client, "13900007777")
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/me")
    assert "王建国" in client.get("/me").get_data(as_text=True)
    # Used once: a second use (another browser) fails.
    other = world.app.test_client()
    confirm = other.get(path).get_data(as_text=True)
    assert "expired or was already used" in confirm or "已过期" in confirm
    # Only a hash of the token is stored.
    token = path.rsplit("/", 1)[1]
    assert world.session.scalar(select(LoginLink)).token_hash != token
    out = client.post("/logout", data={"csrf_token": csrf_token(client.get("/me").get_data(as_text=True))})
    assert out.status_code == 303, out.get_data(as_text=True)[:300]
    assert client.get("/me").status_code == 303


def test_an_expired_link_does_not_sign_in(world):
    register(world.app, phone="13900007777")
    client = world.app.test_client()
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"phone": "13900007777", "csrf_token": csrf_token(page)})
    world.session.execute(update(LoginLink).values(expires_at=utcnow() - timedelta(seconds=1)))
    world.session.commit()
    path = re.sub(r"^https?://[^/]+", "", login_links(world)[-1])
    resp = client.post(path, data={"csrf_token": csrf_token(client.get("/login").get_data(as_text=True))})
    assert resp.status_code == 400
    assert client.get("/me").status_code == 303


def test_the_portal_runs_a_task_to_completion_and_asks_for_a_correction(world):
    vid = register(world.app, phone="13900007777")
    intruder = register(world.app, phone="13900006666", building="40")
    world.receive(submitted(), utcnow())  # an offer still open now, on the web's clock
    client = world.app.test_client()
    sign_in(world, client, "13900007777")
    page = client.get("/me").get_data(as_text=True)
    offer = world.offers()[0]
    assert f"/me/offers/{offer.id}" in page  # by id: the link's token is not stored
    world.at(utcnow()).accept(offer)
    world.session.commit()
    task = world.session.scalar(select(Assignment))

    # Another volunteer cannot touch it.
    stranger = world.app.test_client()
    sign_in(world, stranger, "13900006666")
    token = csrf_token(stranger.get("/me").get_data(as_text=True))
    assert stranger.post(f"/me/tasks/{task.id}/start", data={"csrf_token": token}).status_code == 404

    # The printable sheet lists the task (the contact needs intake, not running here: masked).
    sheet = client.get("/me/sheet")
    assert sheet.status_code == 200 and sheet.headers["Cache-Control"] == "no-store"
    assert 'class="sheet-item"' in sheet.get_data(as_text=True) and "138****1234" in sheet.get_data(as_text=True)
    assert "sheet-item" not in stranger.get("/me/sheet").get_data(as_text=True)

    token = csrf_token(client.get("/me").get_data(as_text=True))
    assert client.post(f"/me/tasks/{task.id}/start", data={"csrf_token": token}).status_code == 303
    bad = client.post(f"/me/tasks/{task.id}/complete", data={"minutes": "-5", "csrf_token": token})
    assert bad.status_code == 422
    done = client.post(f"/me/tasks/{task.id}/complete", data={"minutes": "50", "note": "好了", "csrf_token": token})
    assert done.status_code == 303
    world.session.expire_all()
    entry = world.session.scalar(select(HoursEntry))
    assert entry.volunteer_id == vid and entry.status == "pending"
    resp = client.post(f"/me/hours/{entry.id}/correction", data={"hours": "1.0", "reason": "路上花了时间",
                                                                 "csrf_token": token})
    assert resp.status_code == 303
    world.session.expire_all()
    entry = world.session.get(HoursEntry, entry.id)
    assert (entry.status, entry.correction_hours) == ("correction", Decimal("1.0"))
    assert intruder


def test_a_station_lead_confirms_hours_of_their_station(world):
    lead = register(world.app, phone="13900007777")
    barber = register(world.app, phone="13900006666")
    station = Station(code="cuilinli", name="翠邻里服务站", place="3幢一楼", lead_volunteer_id=lead)
    world.session.add(station)
    world.session.flush()
    from datetime import time
    world.session.add(StationSession(station_id=station.id, category="haircut", weekday=5, start_time=time(9),
                                     end_time=time(11), volunteer_id=barber, slots=3))
    world.session.commit()
    world.receive(submitted(mode="station"), utcnow())
    task = world.session.scalar(select(Assignment))
    world.at(utcnow()).complete(task, 30, "")
    world.session.commit()
    client = world.app.test_client()
    sign_in(world, client, "13900007777")
    page = client.get("/me").get_data(as_text=True)
    entry = world.session.scalar(select(HoursEntry))
    assert f"/me/hours/{entry.id}/confirm" in page
    assert client.post(f"/me/hours/{entry.id}/confirm", data={"csrf_token": csrf_token(page)}).status_code == 303
    world.session.expire_all()
    entry = world.session.get(HoursEntry, entry.id)
    assert entry.status == "confirmed" and entry.confirmed_by == f"station-lead:{lead}"
    # The barber (not the lead) may not confirm.
    other = world.app.test_client()
    sign_in(world, other, "13900006666")
    page = other.get("/me").get_data(as_text=True)
    assert other.post(f"/me/hours/{entry.id}/confirm", data={"csrf_token": csrf_token(page)}).status_code == 404


def test_marking_messages_read_goes_to_notify_as_a_task(world):
    vid = register(world.app, phone="13900007777")
    client = world.app.test_client()
    sign_in(world, client, "13900007777")
    token = csrf_token(client.get("/me").get_data(as_text=True))
    assert client.post("/me/inbox/read", data={"up_to": "42", "csrf_token": token}).status_code == 303
    world.session.expire_all()
    rows = world.session.scalars(select(OutboxMessage).where(OutboxMessage.task_name == contract.INBOX_READ)).all()
    assert [r.envelope["data"] for r in rows] == [{"recipient": f"volunteer:{vid}", "up_to_id": 42}]
