"""Matching: the volunteer registry and rosters, dispatch (sequential,
broadcast, expiry, escalation chain, stations), the task to completion,
hours and the time bank — on SQLite and PostgreSQL, with a controllable
clock."""
from __future__ import annotations

import io
import json
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from services.common import contract
from services.common.clock import SHANGHAI
from services.volunteers import jobs
from services.volunteers import tasks as matching_tasks
from services.volunteers.models import (
    Assignment,
    Booking,
    Building,
    CoinEntry,
    Escalation,
    HoursEntry,
    Leader,
    Offer,
    ServiceRequest,
    Station,
    StationSession,
    Volunteer,
)
from services.volunteers.timebank import TimeBank, hours_between
from tests.conftest import csrf_token
from tests.factories import (
    NEW_VOLUNTEER,
    NOW,
    STAFF,
    World,
    cancelled,
    feedback,
    register,
    resident_request,
    submitted,
)


@pytest.fixture
def app(make_app, backend):
    return make_app("volunteers", backend=backend)


@pytest.fixture
def world(app):
    w = World(app)
    yield w
    w.session.close()


# --- registry ---


def test_registry_api_needs_the_staff_token_and_masks_secrets(app, client):
    assert client.post("/api/v1/volunteers", json=NEW_VOLUNTEER).status_code == 401
    vid = register(app, phone="13900001111", teams=["翠邻里"],
                   windows=[{"weekday": 5, "start": "09:00", "end": "11:00"}], days_off=["2026-12-01"])
    assert client.get(f"/api/v1/volunteers/{vid}").status_code == 401
    got = client.get(f"/api/v1/volunteers/{vid}", headers=STAFF).json
    assert got["phone"] == "139****1111"
    assert got["channels"] == ["json://127.0.0.1:9/****"]
    assert got["windows"] == [{"weekday": 5, "start": "09:00", "end": "11:00"}]
    assert got["days_off"] == ["2026-12-01"] and got["teams"] == ["翠邻里"] and got["grid"] == "G1"


@pytest.mark.parametrize("changes, field", [
    ({"skills": ["parking"]}, "skills"),          # staff-only: not a volunteer skill
    ({"skills": []}, "skills"),
    ({"phone": "110"}, "phone"),
    ({"building": "999"}, "building"),
    ({"unit": "9"}, "unit"),
    ({"capacity": 0}, "capacity"),
    ({"channels": ["not a url"]}, "channels"),
    ({"verified": ["health_check"]}, "verified"),  # not one of their skills
    ({"windows": [{"weekday": 7, "start": "09:00", "end": "11:00"}]}, "windows"),
    ({"windows": [{"weekday": 1, "start": "11:00", "end": "09:00"}]}, "windows"),
])
def test_registry_rejects_bad_input_field_by_field(app, changes, field):
    before = app.test_client().get("/api/v1/volunteers", headers=STAFF).json
    resp = app.test_client().post("/api/v1/volunteers", json={**NEW_VOLUNTEER, **changes}, headers=STAFF)
    assert resp.status_code == 422
    assert field in resp.json["errors"]["json"]
    assert app.test_client().get("/api/v1/volunteers", headers=STAFF).json == before


def test_a_phone_registered_already_is_a_conflict(app):
    register(app, phone="13900001111")
    before = app.test_client().get("/api/v1/volunteers", headers=STAFF).json
    resp = app.test_client().post("/api/v1/volunteers", json={**NEW_VOLUNTEER, "phone": "13900001111"},
                                  headers=STAFF)
    assert resp.status_code == 409 and "phone" in resp.json["errors"]["json"]
    assert app.test_client().get("/api/v1/volunteers", headers=STAFF).json == before


def test_list_filters_update_and_deactivate(app, client):
    a = register(app, teams=["翠邻里"])
    b = register(app, building="40", skills=["sharpening"], teams=["夕阳红"])

    def ids(query):
        return [v["id"] for v in client.get(f"/api/v1/volunteers?{query}", headers=STAFF).json]

    assert ids("skill=haircut") == [a] and ids("grid=G4") == [b] and ids("team=夕阳红") == [b]
    assert ids("building=3") == [a]
    resp = client.patch(f"/api/v1/volunteers/{a}", json={"active": False, "capacity": 3}, headers=STAFF)
    assert resp.status_code == 200 and resp.json["active"] is False and resp.json["capacity"] == 3
    assert ids("active=true") == [b]
    assert client.patch(f"/api/v1/volunteers/{a}", json={"unit": "9"}, headers=STAFF).status_code == 422


ROSTER = (
    "name,phone,building,unit,skills,verified,teams,capacity,windows,days_off,active\n"
    "李秀英,13911110001,3,1,haircut alterations,,翠邻里,2,Sat 09:00-11:00; 周日 14:00-16:00,2026-12-24,1\n"
    "赵医生,13911110002,5,2,health_check,health_check,达式华医疗服务队,1,,,是\n"
)
BAD_ROW = "坏行,12345,999,1,flying,,,x,Someday 9-10,,1\n"


def upload(app, text, partial=False, name="roster.csv"):
    return app.test_client().post(f"/api/v1/volunteers/import?partial={str(partial).lower()}", headers=STAFF,
                                  data={"file": (io.BytesIO(text.encode("utf-8-sig")), name)},
                                  content_type="multipart/form-data")


def test_roster_import_all_or_nothing_with_a_row_by_row_report(app):
    resp = upload(app, ROSTER + BAD_ROW)
    assert resp.status_code == 422
    assert resp.json["imported"] == 0 and resp.json["rows"] == 3
    [bad] = resp.json["errors"]
    assert bad["row"] == 4
    assert {"phone", "building", "skills", "capacity", "windows"} <= set(bad["errors"])
    with app.app_context():
        assert app.extensions["db"].Session.scalar(select(func.count()).select_from(Volunteer)) == 0
    resp = upload(app, ROSTER + BAD_ROW, partial=True)
    assert resp.status_code == 200 and resp.json["imported"] == 2
    # The same file again updates (by phone) instead of duplicating.
    assert upload(app, ROSTER).json["imported"] == 2
    vols = app.test_client().get("/api/v1/volunteers", headers=STAFF).json
    assert len(vols) == 2
    li = next(v for v in vols if v["name"] == "李秀英")
    assert li["windows"] == [{"weekday": 5, "start": "09:00", "end": "11:00"},
                             {"weekday": 6, "start": "14:00", "end": "16:00"}]
    assert next(v for v in vols if v["name"] == "赵医生")["verified"] == ["health_check"]


def test_roster_export_round_trips_through_excel(make_app, app):
    upload(app, ROSTER)
    resp = app.test_client().get("/api/v1/volunteers/export?format=xlsx", headers=STAFF)
    assert resp.status_code == 200
    sheet = load_workbook(io.BytesIO(resp.data)).active
    header = [c.value for c in sheet[1]]
    assert "channels" not in header and header[:3] == ["name", "display_name", "phone"]
    assert sheet.max_row == 3
    csv_text = app.test_client().get("/api/v1/volunteers/export", headers=STAFF).data.decode("utf-8-sig")
    assert "李秀英" in csv_text and "Sat 09:00-11:00; Sun 14:00-16:00" in csv_text
    again = upload(app, csv_text, name="export.csv")
    assert again.status_code == 200 and again.json["imported"] == 2 and again.json["errors"] == []


def test_roster_import_command_shows_progress(app, tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER + BAD_ROW, encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["import-volunteers", str(path)])
    assert result.exit_code == 1 and "row 4" in result.output and "imported 0" in result.output
    result = app.test_cli_runner().invoke(args=["import-volunteers", str(path), "--partial"])
    assert result.exit_code == 0 and "imported 2" in result.output


# --- dispatch ---


def test_sequential_decline_then_expiry_reaches_the_third_candidate(world):
    first = register(world.app)                               # same stairwell
    second = register(world.app, unit="2")                    # same building
    third = register(world.app, building="5")                 # same grid
    req = world.receive(submitted())
    [o1] = world.offers()
    assert o1.volunteer_id == first and o1.expires_at == NOW + timedelta(minutes=30)
    assert world.at(NOW + timedelta(minutes=1)).decline(o1, "在外地")
    world.session.commit()
    o1, o2 = world.offers()
    assert (o1.status, o1.decline_reason, o2.volunteer_id) == ("declined", "在外地", second)
    world.sweep(NOW + timedelta(minutes=20))                  # not yet expired
    assert len(world.offers()) == 2
    world.sweep(NOW + timedelta(minutes=32))
    o1, o2, o3 = world.offers()
    assert (o2.status, o3.volunteer_id, o3.status) == ("expired", third, "open")
    sends = [e for e in world.events(contract.NOTIFY_SEND) if e["template"] == "offer"]
    assert [s["recipient"] for s in sends] == [f"volunteer:{v}" for v in (first, second, third)]
    # One "offered" status for intake, not one per offer.
    assert [e["status"] for e in world.events(contract.STATUS_CHANGED)] == ["offered"]
    assert world.session.get(ServiceRequest, req.id).status == "offered"


def test_broadcast_offers_the_top_k_and_the_first_acceptance_wins(world):
    doctors = [register(world.app, skills=["health_check"], verified=["health_check"], building=b)
               for b in ("3", "4", "5", "6")]
    unverified = register(world.app, skills=["health_check"])
    world.receive(submitted(category="health_check"))
    offers = world.offers()
    assert len(offers) == 3 and unverified not in {o.volunteer_id for o in offers}
    assert {o.volunteer_id for o in offers} <= set(doctors)
    d = world.at(NOW + timedelta(minutes=5))
    assert d.accept(offers[1]) == "accepted"
    world.session.commit()
    assert d.accept(world.offers()[0]) == "closed"
    statuses = [o.status for o in world.offers()]
    assert statuses == ["withdrawn", "accepted", "withdrawn"]
    withdrawn = [e for e in world.events(contract.NOTIFY_SEND) if e["template"] == "offer_withdrawn"]
    assert {e["recipient"] for e in withdrawn} == {f"volunteer:{offers[0].volunteer_id}",
                                                  f"volunteer:{offers[2].volunteer_id}"}
    assert world.count(Assignment) == 1


def test_the_requests_grid_answers_first_and_the_community_when_the_grid_runs_short(world):
    # Building 5 is in building 3's grid (G1); 60 and 61 are in G6. The far
    # volunteers are better on everything but nearness.
    near = register(world.app, building="5", capacity=1)
    far = [register(world.app, building=b, capacity=5) for b in ("60", "61")]
    world.session.execute(Volunteer.__table__.update().where(Volunteer.id.in_(far))
                          .values(offers_count=10, accepts_count=10, rating_sum=50, rating_count=10))
    world.session.commit()
    first = world.receive(submitted())
    assert [o.volunteer_id for o in world.offers(first.id)] == [near]
    # The grid's only volunteer holds that offer: the next request goes out of the grid.
    second = world.receive(submitted(unit="2"))
    assert [o.volunteer_id for o in world.offers(second.id)] == [min(far)]
    # Broadcast: two doctors in the grid, two outside; the top three are both
    # of the grid's and the best of the rest.
    doctors = [register(world.app, skills=["health_check"], verified=["health_check"], building=b)
               for b in ("4", "6", "60", "61")]
    check = world.receive(submitted(category="health_check"))
    assert sorted(o.volunteer_id for o in world.offers(check.id)) == doctors[:3]


def full_scan(d, facts, asked, want):
    """The ranking as matching made it before it read candidates tier by
    tier in the database: every active volunteer with the skill, busy as
    their tasks and unanswered offers say, ranked by the engine."""
    from services.volunteers import engine

    volunteers = d.volunteers_for(facts.category)
    pending = dict(d.session.execute(select(Offer.volunteer_id, func.count()).where(Offer.status == "open")
                                     .group_by(Offer.volunteer_id)).all())
    tasks = {v.id: v.active_tasks + pending.get(v.id, 0) for v in volunteers}
    return engine.rank(facts, volunteers, d.now, d.weights, exclude=asked, limit=want, tasks=tasks)


@pytest.mark.parametrize("size", [150, 1500])
def test_candidates_read_tier_by_tier_rank_as_the_full_scan_did(world, size):
    # A random roster (bench.matching's: skills, room, windows, days off all
    # over the community), some of it holding offers already; random
    # requests, some with a window, a requester who volunteers too,
    # volunteers already asked.
    import random

    from bench.matching import request_messages, roster

    rng = random.Random(size)
    roster(world.session, size, rng)
    homes = [(b.code, u) for b in world.session.scalars(select(Building)) for u in b.units]
    messages = request_messages(120, homes, rng)
    for message in messages[:40]:
        world.receive(message)
    assert world.count(Offer) > 0
    d = world.at(NOW)
    digests = world.session.scalars(select(Volunteer.phone_digest).limit(50)).all()
    compared = 0
    for message in messages[40:]:
        _, data = contract.open_envelope(contract.REQUEST_SUBMITTED, message)
        data["requester_digest"] = rng.choice([data["requester_digest"], *digests])
        req = ServiceRequest(id=str(data["request_id"]), category=data["category"], building=data["building"],
                             unit=rng.choice([data["unit"], None]), window_start=data["window_start"],
                             window_end=data["window_end"], urgency=data["urgency"], elderly=data["elderly"],
                             disability=data["disability"], requester_digest=data["requester_digest"])
        req.home = world.session.get(Building, req.building)
        facts = d.request_facts(req)
        asked = frozenset(rng.sample(range(1, size + 1), rng.choice((0, 0, 3, 30))))
        for want in (1, 3):
            assert d.best_free(facts, asked, want) == full_scan(d, facts, asked, want), (data, asked, want)
            compared += 1
    assert compared == 160


def test_a_named_volunteer_is_offered_first_only_with_room(world):
    paired = register(world.app, building="40", capacity=1)
    near = register(world.app, building="3", unit="1")
    first = world.receive(submitted(preferred_volunteer_id=paired))
    assert [o.volunteer_id for o in world.offers(first.id)] == [paired]
    # The paired volunteer's one place is held by that offer: the usual ranking.
    second = world.receive(submitted(preferred_volunteer_id=paired))
    assert [o.volunteer_id for o in world.offers(second.id)] == [near]


def test_a_freed_volunteer_goes_to_the_most_urgent_waiting_request(world):
    # The sweep serves urgent requests and residents over 80 or with a
    # disability first when volunteers are scarce, then the earliest.
    only = register(world.app, capacity=1)
    first = world.receive(submitted())
    plain = world.receive(submitted(), moment=NOW + timedelta(minutes=1))
    elderly = world.receive(submitted(elderly=True), moment=NOW + timedelta(minutes=2))
    urgent_elderly = world.receive(submitted(urgency="urgent", elderly=True), moment=NOW + timedelta(minutes=3))
    assert [len(world.offers(r.id)) for r in (first, plain, elderly, urgent_elderly)] == [1, 0, 0, 0]
    world.sweep(NOW + timedelta(hours=1))  # the first offer expired: the volunteer has room again
    assert [o.volunteer_id for o in world.offers(urgent_elderly.id)] == [only]
    assert world.offers(plain.id) == world.offers(elderly.id) == []


def test_no_candidate_climbs_the_escalation_chain(world):
    req = world.receive(submitted(category="bicycle_repair", building="7", unit="2"))
    [esc] = world.session.scalars(select(Escalation)).all()
    leader = world.session.get(Leader, esc.leader_id)
    assert (esc.reason, esc.level) == ("no_candidate", 1)
    assert (leader.role, leader.building, leader.unit) == ("hallway", "7", "2")
    world.sweep(NOW + timedelta(minutes=60))
    assert world.count(Escalation) == 1
    world.sweep(NOW + timedelta(minutes=121))
    world.sweep(NOW + timedelta(minutes=242))
    world.sweep(NOW + timedelta(minutes=500))
    levels = [(e.level, world.session.get(Leader, e.leader_id).role)
              for e in world.session.scalars(select(Escalation).order_by(Escalation.id))]
    assert levels == [(1, "hallway"), (2, "grid"), (3, "office")]
    sends = [e for e in world.events(contract.NOTIFY_SEND) if e["template"] == "escalation"]
    # As urgent as the request: an ordinary one's wait out the leaders' quiet hours.
    assert len(sends) == 3 and not any(s["urgent"] for s in sends)
    assert [e["status"] for e in world.events(contract.STATUS_CHANGED)] == ["escalated"]
    assert world.session.get(ServiceRequest, req.id).escalation_level == 3


# 20:45 and 22:30 on Friday 27 November 2026 in Hangzhou; quiet hours 21:00–07:00.
EVENING = datetime(2026, 11, 27, 12, 45, tzinfo=timezone.utc)
NIGHT = datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc)


def hangzhou(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%d %H:%M")


def test_an_ordinary_requests_clocks_stand_still_in_the_quiet_hours_and_an_urgent_ones_run(world):
    near = register(world.app, capacity=5)
    other = register(world.app, unit="2", capacity=5)
    evening = world.receive(submitted(), moment=EVENING)
    night = world.receive(submitted(), moment=NIGHT)
    urgent = world.receive(submitted(urgency="urgent"), moment=NIGHT)
    # 30 minutes from 20:45: 15 before the quiet hours and 15 after; 2 hours to be taken likewise.
    assert [(hangzhou(r.accept_by), hangzhou(world.offers(r.id)[0].expires_at)) for r in (evening, night, urgent)] == [
        ("28 08:45", "28 07:15"), ("28 09:00", "28 07:30"), ("28 00:30", "27 23:00")]
    world.sweep(NIGHT + timedelta(hours=1))  # 23:30: only the urgent offer has expired
    assert [(o.volunteer_id, o.status) for o in world.offers(urgent.id)] == [(near, "expired"), (other, "open")]
    assert all(o.status == "open" for r in (evening, night) for o in world.offers(r.id))
    world.sweep(NIGHT + timedelta(hours=2, minutes=1))  # 00:31: the urgent request goes to a leader, at once
    assert world.session.get(ServiceRequest, urgent.id).status == "escalated"
    assert world.count(Escalation) == 1
    world.sweep(datetime(2026, 11, 27, 23, 16, tzinfo=timezone.utc))  # 07:16
    assert [o.status for o in world.offers(evening.id)] == ["expired", "open"]
    assert [o.status for o in world.offers(night.id)] == ["open"]
    # The urgent request went up the chain through the night, and woke its leaders.
    levels = [e.level for e in world.session.scalars(select(Escalation).order_by(Escalation.id))]
    assert levels == [1, 2]
    sends = [(e["template"], e["recipient"].split(":")[0], e["urgent"]) for e in world.events(contract.NOTIFY_SEND)
             if e["template"] in ("offer", "escalation")]
    assert sends == [("offer", "volunteer", False), ("offer", "volunteer", False), ("offer", "volunteer", True),
                     ("offer", "volunteer", True), ("escalation", "leader", True), ("offer", "volunteer", False),
                     ("escalation", "leader", True)]


def test_an_ordinary_escalation_steps_up_in_waking_hours(world):
    req = world.receive(submitted(category="bicycle_repair", building="7", unit="2"), moment=EVENING)
    assert world.count(Escalation) == 1
    world.sweep(EVENING + timedelta(hours=5))  # 01:45: two hours have passed, but not two waking hours
    assert world.count(Escalation) == 1
    world.sweep(datetime(2026, 11, 27, 23, 44, tzinfo=timezone.utc))  # 07:44: 15 + 44 minutes awake
    assert world.count(Escalation) == 1
    world.sweep(datetime(2026, 11, 28, 0, 46, tzinfo=timezone.utc))  # 08:46: 2 h 1 min
    assert world.count(Escalation) == 2 and world.session.get(ServiceRequest, req.id).escalation_level == 2


def test_staff_only_goes_to_the_grid_leader(world):
    register(world.app)
    world.receive(submitted(category="parking"))
    esc = world.session.scalar(select(Escalation))
    assert (esc.reason, world.session.get(Leader, esc.leader_id).role) == ("staff_only", "grid")
    assert world.count(Offer) == 0


def test_busy_volunteers_make_requests_wait_and_the_vulnerable_go_first(world):
    vid = register(world.app, capacity=1)
    first = world.receive(submitted())
    world.at(NOW).accept(world.offers()[0])
    world.session.commit()
    plain = world.receive(submitted(), NOW + timedelta(minutes=1))
    elderly = world.receive(submitted(elderly=True), NOW + timedelta(minutes=2))
    assert (plain.status, elderly.status) == ("matching", "matching")
    task = world.session.scalar(select(Assignment).where(Assignment.request_id == first.id))
    world.at(NOW + timedelta(minutes=40)).complete(task, 35, "理好了")
    world.session.commit()
    world.sweep(NOW + timedelta(minutes=41))
    [offer] = [o for o in world.offers() if o.status == "open"]
    assert offer.request_id == elderly.id and offer.volunteer_id == vid
    # Nobody took the plain one within two hours: the hallway leader hears of it.
    world.sweep(NOW + timedelta(minutes=122))
    assert world.session.get(ServiceRequest, plain.id).status == "escalated"
    assert world.session.scalar(select(Escalation).where(Escalation.request_id == plain.id)).reason == "not_taken"


def test_a_volunteer_is_never_offered_their_own_request(world):
    key = world.app.config["PHONE_DIGEST_KEY"]
    register(world.app, phone="13900005555")
    world.receive(submitted(requester_digest=contract.phone_digest("139 0000 5555", key)))
    assert world.count(Offer) == 0 and world.count(Escalation) == 1


def test_an_open_offer_holds_a_place_and_accept_at_capacity_is_refused(world):
    vid = register(world.app, capacity=1)
    world.receive(submitted())
    waiting = world.receive(submitted(unit="2"))
    assert waiting.status == "matching" and len(world.offers()) == 1
    # An older offer still open (say, made before a capacity change) cannot overbook.
    world.session.add(Offer(request_id=waiting.id, volunteer_id=vid, created_at=NOW,
                            expires_at=NOW + timedelta(minutes=30)))
    world.session.commit()
    first, second = world.offers()
    d = world.at(NOW)
    assert d.accept(first) == "accepted"
    world.session.commit()
    assert d.accept(second) == "full"
    assert world.session.get(Volunteer, vid).active_tasks == 1
    vol = world.session.get(Volunteer, vid)
    vol.active_tasks = 2
    with pytest.raises(Exception, match="(?i)check|constraint"):
        world.session.commit()
    world.session.rollback()


# --- stations: fixed place, fixed time, fixed person ---


def station_with_session(world, slots=2, weekday=5, start=time(9), end=time(11)):
    barber = world.session.get(Volunteer, register(world.app))
    station = Station(code="cuilinli", name="翠邻里服务站", place="3幢一楼")
    world.session.add(station)
    world.session.flush()
    sess = StationSession(station_id=station.id, category="haircut", weekday=weekday, start_time=start,
                          end_time=end, volunteer_id=barber.id, slots=slots)
    world.session.add(sess)
    world.session.commit()
    return barber, sess


def test_station_booking_fills_slots_in_order_and_overflows_to_the_next_session(world):
    barber, sess = station_with_session(world, slots=2)
    reqs = [world.receive(submitted(mode="station"), NOW + timedelta(minutes=i)) for i in range(3)]
    bookings = world.session.scalars(select(Booking).order_by(Booking.id)).all()
    local = [b.starts_at.astimezone(SHANGHAI) for b in bookings]
    assert [(b.slot, str(d.date()), d.strftime("%H:%M")) for b, d in zip(bookings, local, strict=True)] == [
        (1, "2026-11-28", "09:00"), (2, "2026-11-28", "09:00"), (1, "2026-12-05", "09:00")]
    assert all(world.session.get(ServiceRequest, r.id).status == "assigned" for r in reqs)
    told = world.events(contract.STATUS_CHANGED)
    assert told[0]["status"] == "assigned" and told[0]["place"] == "翠邻里服务站（3幢一楼）"
    assert told[0]["volunteer_name"] == barber.display_name and told[0]["appointment_at"].startswith("2026-11-28T01:00")
    assert world.session.get(Volunteer, barber.id).active_tasks == 0  # slots, not home-visit capacity
    assert world.count(Offer) == 0


def test_station_booking_respects_the_window_and_falls_back_to_a_home_visit(world):
    station_with_session(world, slots=1)
    window = {"window_start": datetime(2026, 12, 5, 0, 0, tzinfo=timezone.utc),
              "window_end": datetime(2026, 12, 5, 4, 0, tzinfo=timezone.utc)}
    world.receive(submitted(mode="station", **window))
    [booking] = world.session.scalars(select(Booking)).all()
    assert booking.day.isoformat() == "2026-12-05"
    # No session fits a Tuesday window: a neighbour comes home instead.
    tuesday = {"window_start": datetime(2026, 12, 1, 1, tzinfo=timezone.utc),
               "window_end": datetime(2026, 12, 1, 3, tzinfo=timezone.utc)}
    world.receive(submitted(mode="station", **tuesday))
    assert world.count(Booking) == 1 and world.count(Offer) == 1


# --- cancellation, completion, hours, time bank, feedback, reassignment ---


def test_cancellation_withdraws_offers_frees_the_volunteer_and_the_slot(world):
    vid = register(world.app, capacity=1)
    req = world.receive(submitted())
    world.at(NOW).accept(world.offers()[0])
    world.session.commit()
    assert world.session.get(Volunteer, vid).active_tasks == 1
    cancel = cancelled(req.id)
    assert matching_tasks.request_cancelled.apply(args=[cancel]).get() == "done"
    world.session.expire_all()
    assert world.session.get(Volunteer, vid).active_tasks == 0
    assert world.session.get(ServiceRequest, req.id).status == "cancelled"
    assert world.session.scalar(select(Assignment)).status == "cancelled"
    told = [e for e in world.events(contract.NOTIFY_SEND) if e["template"] == "offer_withdrawn"]
    assert told[-1]["recipient"] == f"volunteer:{vid}" and told[-1]["context"]["reason"] == "cancelled"

    _, sess = station_with_session(world, slots=1)
    booked = world.receive(submitted(mode="station"))
    world.at(NOW).cancel(world.session.get(ServiceRequest, booked.id), "resident", "")
    world.session.commit()
    assert world.session.scalar(select(Booking)).status == "cancelled"
    again = world.receive(submitted(mode="station"))  # the freed slot is booked again
    assert world.session.scalar(select(Booking).where(Booking.request_id == again.id)).slot == 1


def test_completion_counts_hours_in_half_hour_steps_and_coins_follow_confirmation(world):
    vid = register(world.app)
    other = register(world.app, building="40")
    req = world.receive(submitted())
    world.at(NOW).accept(world.offers()[0])
    task = world.session.scalar(select(Assignment))
    world.at(NOW + timedelta(minutes=10)).start(task)
    entry = world.at(NOW + timedelta(minutes=10 + 80)).complete(task, 80, "剪完了")
    world.session.commit()
    assert entry.hours == Decimal("1.5") and entry.status == "pending"
    assert [e["status"] for e in world.events(contract.STATUS_CHANGED)][-2:] == ["in_progress", "completed"]
    assert world.session.get(Volunteer, vid).active_tasks == 0

    client = world.app.test_client()
    assert client.post(f"/api/v1/hours/{entry.id}/confirm", json={"hours": "1.3"}, headers=STAFF).status_code == 422
    resp = client.post(f"/api/v1/hours/{entry.id}/confirm", json={"by": "网格员张"}, headers=STAFF)
    assert resp.status_code == 200 and resp.json["status"] == "confirmed"
    client.post(f"/api/v1/hours/{entry.id}/confirm", json={"by": "网格员张"}, headers=STAFF)  # twice: one credit
    d = TimeBank(world.session, now=NOW + timedelta(days=1))
    assert d.coin_balance(vid) == Decimal("1.5")
    assert world.count(CoinEntry) == 1
    # Coins buy services or go to a neighbour; never below zero, never cash.
    assert client.post("/api/v1/coins/spend", json={"volunteer_id": vid, "amount": "5", "ref": "理发"},
                       headers=STAFF).status_code == 409
    assert d.move_coins(vid, Decimal("0.5"), "donated", f"to:{other}", to_volunteer=other)
    world.session.commit()
    assert client.post("/api/v1/coins/spend", json={"volunteer_id": vid, "amount": "1", "ref": "修伞"},
                       headers=STAFF).json == {"balance": "0.0"}
    assert d.coin_balance(other) == Decimal("0.5")

    ranking = client.get("/api/v1/hours/ranking?month=2026-11", headers=STAFF).json
    assert ranking == [{"rank": 1, "volunteer_id": vid, "name": "王建国", "hours": "1.5", "tasks": 1}]
    csv_text = client.get("/api/v1/hours/ranking?month=2026-11&format=csv", headers=STAFF).data.decode("utf-8-sig")
    assert "王建国,1.5,1" in csv_text
    record = client.get("/api/v1/hours/export?month=2026-11&format=xlsx", headers=STAFF)
    sheet = load_workbook(io.BytesIO(record.data)).active
    assert [c.value for c in sheet[2]][1:5] == ["王建国", "2026-11-27 11:30", "haircut", "1.5"]
    assert client.get("/api/v1/hours/ranking?month=2026-13", headers=STAFF).status_code == 422
    assert req.id


def test_hours_rounding():
    start = NOW
    assert hours_between(start, start + timedelta(minutes=5)) == Decimal("0.5")
    assert hours_between(start, start + timedelta(minutes=44)) == Decimal("0.5")
    assert hours_between(start, start + timedelta(minutes=45)) == Decimal("1.0")
    assert hours_between(start, start + timedelta(minutes=100)) == Decimal("1.5")


def test_feedback_feeds_the_rating_and_reaches_the_volunteer(world):
    vid = register(world.app)
    req = world.receive(submitted())
    world.at(NOW).accept(world.offers()[0])
    world.session.commit()
    message = feedback(req.id, rating=4, comment="很耐心")
    assert matching_tasks.feedback_received.apply(args=[message]).get() == "done"
    assert matching_tasks.feedback_received.apply(args=[message]).get() == "duplicate"
    world.session.expire_all()
    assert world.session.get(Volunteer, vid).rating == 4.0
    thanks = [e for e in world.events(contract.NOTIFY_SEND) if e["template"] == "thanks"]
    assert len(thanks) == 1 and thanks[0]["context"]["comment"] == "很耐心"


def test_staff_can_reassign_by_hand(world):
    first = register(world.app, capacity=1)
    second = register(world.app, building="40", capacity=1)
    req = world.receive(submitted())
    world.at(NOW).accept(world.offers()[0])
    world.session.commit()
    client = world.app.test_client()
    resp = client.post(f"/api/v1/requests/{req.id}/assign", json={"volunteer_id": second, "actor": "staff:1"},
                       headers=STAFF)
    assert resp.status_code == 200
    world.session.expire_all()
    assert world.session.get(Volunteer, first).active_tasks == 0
    assert world.session.get(Volunteer, second).active_tasks == 1
    live = world.session.scalars(select(Assignment).where(Assignment.status != "cancelled")).all()
    assert [a.volunteer_id for a in live] == [second]
    assert world.events(contract.STATUS_CHANGED)[-1]["actor"] == "staff:1"
    # The second volunteer is full now: a further reassignment to them is refused.
    assert client.post(f"/api/v1/requests/{req.id}/assign", json={"volunteer_id": second},
                       headers=STAFF).status_code == 409


def test_offer_page_shows_building_only_and_takes_accept_by_post(world):
    register(world.app)
    world.receive(submitted(), datetime.now(timezone.utc))  # open on the web's clock: an expired one is closed
    offer = world.offers()[0]
    link = world.offer_path(offer)
    client = world.app.test_client()
    page = client.get(f"{link}?decision=accept").get_data(as_text=True)
    assert "138****1234" in page and "3幢" in page
    assert world.offers()[0].status == "open"  # a GET never changes anything
    assert client.post(link, data={"decision": "accept"}).status_code == 400  # no CSRF token
    resp = client.post(link, data={"decision": "accept", "csrf_token": csrf_token(page)})
    assert resp.status_code == 303 and "outcome=accepted" in resp.headers["Location"]
    assert world.offers()[0].status == "accepted"
    sends = [e for e in world.events(contract.NOTIFY_SEND) if e["template"] == "offer"]
    assert "unit" not in sends[0]["context"]  # the building only, before acceptance
    assert world.count(HoursEntry) == 0


def test_the_demo_community_seeds_once(make_app):
    app = make_app("volunteers", DEMO=True)
    client = app.test_client()
    resp = client.get("/api/v1/volunteers?page_size=200", headers=STAFF)
    vols = resp.json
    assert len(vols) == 60 and json.loads(resp.headers["X-Pagination"])["total"] == 60
    doctors = [v for v in vols if "达式华医疗服务队" in v["teams"]]
    assert doctors and all(set(v["verified"]) == set(v["skills"]) for v in doctors)
    [station] = client.get("/api/v1/stations", headers=STAFF).json
    sessions = client.get(f"/api/v1/stations/{station['id']}/sessions", headers=STAFF).json
    assert {s["category"] for s in sessions} >= {"haircut", "sharpening", "umbrella_repair"}
    assert app.test_cli_runner().invoke(args=["init-db"]).exit_code == 0  # again: nothing doubled
    assert json.loads(client.get("/api/v1/volunteers", headers=STAFF).headers["X-Pagination"])["total"] == 60
    assert len(client.get("/api/v1/stations", headers=STAFF).json) == 1


def failed(key, template):
    return contract.envelope(contract.DELIVERY_FAILED, {"dedupe_key": key, "recipient": "volunteer:1",
                                                        "template": template, "error": "HTTP 500"},
                             source="notify")


def test_an_unreachable_volunteer_is_skipped_and_an_unreachable_leader_bypassed(world):
    first = register(world.app)
    second = register(world.app, unit="2")
    world.receive(submitted())
    [o1] = world.offers()
    assert world.events(contract.NOTIFY_SEND)[0]["reply_to"] == "volunteers"
    assert matching_tasks.delivery_failed.apply(args=[failed(f"offer:{o1.id}", "offer")]).get() == "done"
    o1, o2 = world.offers()
    assert (o1.status, o1.decline_reason, o2.volunteer_id) == ("expired", "unreachable", second)
    assert first != second

    req = world.receive(submitted(category="bicycle_repair", building="7", unit="2"))
    esc = world.session.scalar(select(Escalation).where(Escalation.request_id == req.id))
    matching_tasks.delivery_failed.apply(args=[failed(f"escalation:{esc.id}", "escalation")]).get()
    world.session.expire_all()
    levels = [e.level for e in world.session.scalars(select(Escalation).where(Escalation.request_id == req.id))]
    assert levels == [1, 2]


def test_a_reminder_a_day_before_the_deadline_once(world):
    register(world.app)
    world.receive(submitted())
    world.at(NOW).accept(world.offers()[0])
    world.session.commit()
    world.sweep(NOW + timedelta(days=5))
    assert [e for e in world.events(contract.NOTIFY_SEND) if e["template"] == "reminder"] == []
    world.sweep(NOW + timedelta(days=6, hours=1))
    world.sweep(NOW + timedelta(days=6, hours=2))
    [reminder] = [e for e in world.events(contract.NOTIFY_SEND) if e["template"] == "reminder"]
    assert reminder["context"]["due"] == "12-04 10:00"


def test_grid_leaders_get_a_daily_digest(world):
    register(world.app, capacity=1)
    world.receive(submitted())                                   # offered, in G1
    world.receive(submitted(category="parking"))                 # escalated, in G1
    world.receive(submitted(category="parking", building="40"))  # escalated, in G4
    assert jobs.digest(world.at(NOW + timedelta(hours=3))) == 6
    world.session.commit()
    digests = {e["context"]["grid_name"]: e for e in world.events(contract.NOTIFY_SEND) if e["template"] == "digest"}
    g1 = digests["第1网格"]["context"]
    assert (g1["open"], g1["overdue"], g1["escalated"]) == (2, 1, 1)
    assert digests["第4网格"]["context"]["escalated"] == 1 and digests["第2网格"]["context"]["open"] == 0
    assert digests["第1网格"]["dedupe_key"] == "digest:G1:2026-11-27"


def test_a_request_sent_again_gets_its_answer_again(world):
    """Intake resends a request it never heard back about; matching does not
    handle it twice but repeats its answer."""
    vid = register(world.app)
    message = submitted()
    world.receive(message)
    world.at(NOW).accept(world.offers()[0])
    world.session.commit()
    _, data = contract.open_envelope(contract.REQUEST_SUBMITTED, message)
    again = contract.envelope(contract.REQUEST_SUBMITTED, {**data, "request_id": str(data["request_id"])},
                              source="requests")
    assert matching_tasks.request_submitted.apply(args=[again]).get() == "done"
    world.session.expire_all()
    assert world.count(Offer) == 1 and world.count(Assignment) == 1
    last = world.events(contract.STATUS_CHANGED)[-1]
    assert (last["status"], last["volunteer_name"]) == ("assigned", "王建国")
    assert vid


def staff_action(world, **data):
    """The console's task, through the same consumer a worker runs."""

    return consume_staff_action(world, contract.envelope(contract.STAFF_ACTION, {"actor": "staff:1", **data},
                                                         source="requests"))


def consume_staff_action(world, message):
    from services.common.inbox import consume
    from services.volunteers.models import DeadMessage, ProcessedMessage
    from services.volunteers.tasks import dispatcher

    task = type("T", (), {"name": contract.STAFF_ACTION, "request": type("R", (), {"id": None, "retries": 0})()})
    with world.app.app_context():
        outcome = consume(task, message, lambda s, d, e: dispatcher(s).staff_action(d),
                          db=world.app.extensions["db"], processed=ProcessedMessage, dead=DeadMessage)
        again = consume(task, message, lambda s, d, e: dispatcher(s).staff_action(d),
                        db=world.app.extensions["db"], processed=ProcessedMessage, dead=DeadMessage)
    world.session.expire_all()
    return outcome, again


def test_console_staff_actions_reassign_refuse_escalate_close_and_deactivate(world):
    first = register(world.app, capacity=1)
    second = register(world.app, building="40", capacity=1)
    req = world.receive(submitted())
    world.at(NOW).accept(world.offers()[0])
    world.session.commit()
    assert staff_action(world, action="assign", request_id=req.id, volunteer_id=second) == ("done", "duplicate")
    assert world.session.get(Volunteer, second).active_tasks == 1
    assert world.session.get(Volunteer, first).active_tasks == 0
    # The second volunteer is full now: matching says why, once.
    other = world.receive(submitted())
    staff_action(world, action="assign", request_id=other.id, volunteer_id=second)
    assert world.events(contract.STAFF_ACTION_REFUSED) == [
        {"request_id": other.id, "action": "assign", "actor": "staff:1", "reason": "full"}]
    staff_action(world, action="escalate", request_id=other.id, level=2, note="不归我管")
    escalation = world.session.scalars(select(Escalation).where(Escalation.request_id == other.id)).one()
    assert (escalation.level, escalation.reason) == (2, "staff")  # a note is not a reason
    staff_action(world, action="close", request_id=other.id, note="电话里解决了")
    assert world.session.get(ServiceRequest, other.id).status == "closed"
    assert all(o.status != "open" for o in world.offers(other.id))
    staff_action(world, action="deactivate", volunteer_id=first)
    assert world.session.get(Volunteer, first).active is False
    staff_action(world, action="update", volunteer_id=first, capacity=4, skills=["haircut", "sharpening"])
    changed = world.session.get(Volunteer, first)
    assert (changed.capacity, sorted(changed.skill_codes)) == (4, ["haircut", "sharpening"])
    with pytest.raises(contract.ContractError):  # an update that changes nothing is refused at the producer
        contract.envelope(contract.STAFF_ACTION, {"action": "update", "actor": "staff:1", "volunteer_id": first},
                          source="requests")
    # What the console reads back: offers, assignments, escalations.
    detail = world.app.test_client().get(f"/api/v1/requests/{req.id}", headers=STAFF).json
    assert [a["volunteer_id"] for a in detail["assignments"] if a["status"] != "cancelled"] == [second]
    assert detail["offers"][0]["status"] == "accepted"
    bad = contract.envelope  # a request action without its request is refused at the producer
    with pytest.raises(contract.ContractError):
        bad(contract.STAFF_ACTION, {"action": "assign", "actor": "staff:1", "volunteer_id": 3}, source="requests")


@pytest.mark.parametrize("producer", ["hand_back", "unhappy_follow_up"])
def test_intakes_own_escalations_reach_leaders_with_their_reason(world, make_app, backend, producer):
    """Driven by intake's real producers (a staff hand-back, an unhappy
    follow-up), not by a message written here: the leader is told why."""
    from services.common.clock import utcnow
    from services.requests import operations as intake_operations
    from services.requests.models import OutboxMessage as IntakeOutbox
    from services.requests.models import ServiceRequest as IntakeRequest

    intake = make_app("requests", backend=backend)
    rid = intake.test_client().post("/api/v1/requests", json=resident_request()).json["id"]
    world.receive(submitted(request_id=rid))
    with intake.app_context():
        session, outbox = intake.extensions["db"].Session, intake.extensions["outbox"]
        req = session.get(IntakeRequest, rid)
        if producer == "hand_back":
            req.move_to("escalated", actor="matching")
            assert intake_operations.hand_back(session, outbox, req, "staff:1", "不归我管", utcnow()) is None
        else:
            req.move_to("assigned", actor="volunteer:1")
            req.move_to("completed", actor="volunteer:1")
            assert intake_operations.give_feedback(session, outbox, req, {
                "rating": 1, "thanks": False, "comment": "没修好", "resolved": False}, actor="resident")
        session.commit()
        [row] = session.scalars(select(IntakeOutbox).where(IntakeOutbox.task_name == contract.STAFF_ACTION)).all()
        message = row.envelope
    told_before = len(world.events(contract.NOTIFY_SEND))
    consume_staff_action(world, message)
    escalation = world.session.scalars(select(Escalation).where(Escalation.request_id == rid)
                                       .order_by(Escalation.id.desc())).first()
    expected = "handed_back" if producer == "hand_back" else "reopened"
    assert escalation.reason == expected
    told = [e for e in world.events(contract.NOTIFY_SEND)[told_before:] if e["template"] == "escalation"]
    assert told and all(e["context"]["reason"] == expected for e in told)
