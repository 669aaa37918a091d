"""Visits to residents living alone or needing care (探访) and the daily
check-in (报平安), in the community service: plans bring visits on their
rhythm (an injectable clock), each visit leaves as a programme request for
intake, outcomes lead where they should, unrecorded visits and missed
check-ins send someone, and staff read plans only in their scope."""
from __future__ import annotations

import re
import secrets
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from services.common import contract
from services.common.clock import SetClock
from services.community.models import (
    CheckIn,
    Household,
    HouseholdPhone,
    OutboxMessage,
    RegisterAccess,
    RegisterChange,
    Resident,
    Visit,
    VisitPlan,
)
from tests.conftest import csrf_token
from tests.factories import console_for

# 09:00 in Hangzhou on a Wednesday.
T0 = datetime(2026, 12, 2, 1, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock():
    return SetClock(T0)


@pytest.fixture
def app(make_app, clock):
    return make_app("community", clock=clock)


def add_resident(app, building="3", unit="1", room="301", grid="G1", name="王秀英", phone="13800001111",
                 birth_year=1938, household_phone=None) -> int:
    with app.app_context():
        s = app.extensions["db"].Session
        home = Household(grid=grid, building=building, unit=unit, floor=int(room[0]), room=room)
        if household_phone:
            home.phones.append(HouseholdPhone(phone=household_phone, phone_digest="d" * 32))
        s.add(home)
        s.flush()
        person = Resident(household_id=home.id, name=name, sex="female", birth_year=birth_year, phone=phone,
                          lives_alone=True, care_need="partial")
        s.add(person)
        s.commit()
        return person.id


def run(app, task_name, data=None, source="requests"):
    """A task handed to the community service's real consumer, as a worker would."""
    with app.app_context():
        task = app.extensions["celery"].tasks[task_name]
        if data is None:
            return task.apply().get()
        return task.apply(args=[contract.envelope(task_name, data, source=source)]).get()


def plan(app, resident_id, **over) -> dict:
    data = {"change_id": str(uuid.uuid4()), "actor": "staff:1", "role": "admin", "resident_id": resident_id,
            "rhythm": "weekly",
            "visitor": "any_volunteer", "volunteer_id": None, "preferred_times": None, "checkin_daily": False,
            "active": True, **over}
    assert run(app, contract.VISIT_PLAN, data) == "done"
    return data


def sent(app, task_name=contract.PROGRAMME_REQUEST) -> list[dict]:
    with app.app_context():
        rows = app.extensions["db"].Session.scalars(select(OutboxMessage).where(
            OutboxMessage.task_name == task_name).order_by(OutboxMessage.created_at)).all()
        return [r.envelope["data"] for r in rows]


def visits(app) -> list[Visit]:
    with app.app_context():
        s = app.extensions["db"].Session
        found = s.scalars(select(Visit).order_by(Visit.id)).all()
        s.expunge_all()
        return found


def outcome(app, visit_id, what, actor="volunteer:4", note=""):
    return run(app, contract.VISIT_OUTCOME, {"visit_ref": f"visit:{visit_id}", "outcome": what, "note": note,
                                             "actor": actor}, source="volunteers")


# --- plans and their rhythm ---


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_plan_brings_visits_on_its_rhythm_each_as_a_programme_request(make_app, backend, clock):
    app = make_app("community", backend=backend, clock=clock)
    rid = add_resident(app)
    change = plan(app, rid)
    # The same change handed over again is a no-op.
    with app.app_context():
        assert run(app, contract.VISIT_PLAN, {**change}) == "done"
        assert app.extensions["db"].Session.scalar(select(func.count()).select_from(VisitPlan)) == 1
        assert app.extensions["db"].Session.get(RegisterChange, change["change_id"]).outcome == "applied"

    assert run(app, contract.VISITS_DUE)["come_due"] == 1  # a new plan: the first visit is due today
    assert run(app, contract.VISITS_DUE)["come_due"] == 0
    [first] = visits(app)
    assert (first.due_on.isoformat(), first.reason) == ("2026-12-02", "scheduled")
    [req] = sent(app)
    assert req["ref"] == f"visit:{first.id}" and req["category"] == "visit" and req["reason"] == "scheduled"
    assert (req["building"], req["unit"], req["room"], req["contact_name"], req["contact_phone"]) == \
        ("3", "1", "301", "王秀英", "13800001111")
    assert req["elderly"] is True and req["urgency"] == "normal" and req["first_to"] is None
    contract.ProgrammeRequest().load(req)  # what intake will accept

    clock.advance(timedelta(days=6))
    assert run(app, contract.VISITS_DUE)["come_due"] == 0
    clock.advance(timedelta(days=1))
    assert run(app, contract.VISITS_DUE)["come_due"] == 1
    assert [v.due_on.isoformat() for v in visits(app)] == ["2026-12-02", "2026-12-09"]


def test_a_plan_that_fell_behind_sends_one_visit_not_a_pile(app, clock):
    rid = add_resident(app)
    plan(app, rid, rhythm="twice_monthly")
    run(app, contract.VISITS_DUE)
    clock.advance(timedelta(days=60))  # the system was down for two months
    assert run(app, contract.VISITS_DUE)["come_due"] == 1
    assert run(app, contract.VISITS_DUE)["come_due"] == 0
    assert [v.due_on.isoformat() for v in visits(app)] == ["2026-12-02", "2027-01-31"]
    with app.app_context():
        assert app.extensions["db"].Session.scalar(select(VisitPlan.next_due)).isoformat() == "2027-02-14"


def test_the_paired_volunteer_goes_first_and_a_hallway_leader_is_sent_instead_of_volunteers(app):
    paired = add_resident(app, room="302", name="李桂兰")
    hallway = add_resident(app, room="401", name="张淑珍")
    plan(app, paired, visitor="paired_volunteer", volunteer_id=7)
    plan(app, hallway, visitor="hallway_leader")
    run(app, contract.VISITS_DUE)
    by_name = {r["contact_name"]: r for r in sent(app)}
    assert by_name["李桂兰"]["preferred_volunteer_id"] == 7 and by_name["李桂兰"]["first_to"] is None
    assert by_name["张淑珍"]["first_to"] == "hallway" and by_name["张淑珍"]["preferred_volunteer_id"] is None


def test_a_paired_plan_without_its_volunteer_is_refused_field_by_field():
    errors = contract.VisitPlanChange().validate({
        "change_id": str(uuid.uuid4()), "actor": "staff:1", "role": "admin", "resident_id": 1, "rhythm": "weekly",
        "visitor": "paired_volunteer"})
    assert errors == {"volunteer_id": ["Choose the paired volunteer."]}
    assert set(contract.VisitPlanChange().validate({"change_id": "x", "actor": "", "resident_id": 0,
                                                    "rhythm": "daily", "visitor": "anyone"})) == \
        {"change_id", "actor", "role", "resident_id", "rhythm", "visitor"}


def test_a_plan_for_a_resident_not_in_the_register_is_refused_and_recorded(app):
    change = plan(app, 999)
    with app.app_context():
        row = app.extensions["db"].Session.get(RegisterChange, change["change_id"])
        assert row.outcome == "refused" and "resident_id" in row.detail
    assert run(app, contract.VISITS_DUE)["come_due"] == 0


def test_a_grid_leader_sets_plans_only_for_residents_of_their_grid(app):
    theirs = add_resident(app, building="40", unit="1", room="101", grid="G2")
    change = plan(app, theirs, role="grid_leader", grid="G1")
    ours = plan(app, add_resident(app), role="grid_leader", grid="G1")
    with app.app_context():
        s = app.extensions["db"].Session
        refused = s.get(RegisterChange, change["change_id"])
        assert refused.outcome == "refused"
        assert refused.detail == {"resident_id": ["This resident is outside your area."]}
        assert s.get(RegisterChange, ours["change_id"]).outcome == "applied"
        assert s.scalar(select(func.count()).select_from(VisitPlan)) == 1


def test_the_visitor_calls_the_household_phone_then_the_office_when_the_resident_has_none(app):
    plan(app, add_resident(app, room="302", name="甲", phone=None, household_phone="057188881234"))
    plan(app, add_resident(app, room="303", name="乙", phone=None))
    run(app, contract.VISITS_DUE)
    phones = {r["contact_name"]: r["contact_phone"] for r in sent(app)}
    assert phones == {"甲": "057188881234", "乙": app.config["OFFICE_PHONE"]}


# --- outcomes ---


def test_each_outcome_leads_where_it_should(app, clock):
    ids = {name: add_resident(app, room=room, name=name)
           for name, room in (("好", "301"), ("关注", "302"), ("急", "303"), ("空", "304"))}
    for rid in ids.values():
        plan(app, rid)
    run(app, contract.VISITS_DUE)
    first = {v.plan_id: v.id for v in visits(app)}
    with app.app_context():
        plan_of = dict(app.extensions["db"].Session.execute(select(VisitPlan.resident_id, VisitPlan.id)).all())
    visit_of = {name: first[plan_of[rid]] for name, rid in ids.items()}
    before = len(sent(app))

    assert outcome(app, visit_of["好"], "done") == "done"
    assert outcome(app, visit_of["关注"], "needs_attention", note="腿脚不便，需要买菜") == "done"
    assert outcome(app, visit_of["急"], "emergency") == "done"
    assert outcome(app, visit_of["空"], "nobody_home") == "done"
    welfare = {r["ref"]: r for r in sent(app)[before:]}
    assert set(welfare) == {f"welfare:{visit_of['关注']}:needs_attention", f"welfare:{visit_of['急']}:emergency"}
    attention = welfare[f"welfare:{visit_of['关注']}:needs_attention"]
    assert (attention["category"], attention["urgency"], attention["first_to"]) == ("welfare", "normal", None)
    emergency = welfare[f"welfare:{visit_of['急']}:emergency"]
    assert (emergency["urgency"], emergency["first_to"]) == ("urgent", "office")

    # The first outcome stands: a second one (the console after the portal) changes nothing.
    assert outcome(app, visit_of["好"], "emergency", actor="staff:1") == "done"
    assert {v.id: v.outcome for v in visits(app)}[visit_of["好"]] == "done"
    assert len(sent(app)) == before + 2

    # Nobody home a second time in a row: the grid leader finds out why, urgently.
    clock.advance(timedelta(days=7))
    run(app, contract.VISITS_DUE)
    second = max(v.id for v in visits(app) if v.plan_id == plan_of[ids["空"]])
    outcome(app, second, "nobody_home")
    [twice] = [r for r in sent(app) if r["ref"].endswith(":nobody_home_twice")]
    assert twice["ref"] == f"welfare:{second}:nobody_home_twice" and twice["urgency"] == "urgent"


def test_a_visit_nobody_recorded_goes_to_the_grid_leader_the_day_after_once(app, clock):
    plan(app, add_resident(app))
    run(app, contract.VISITS_DUE)
    assert run(app, contract.VISITS_DUE)["escalate_overdue"] == 0  # due today: not late yet
    clock.advance(timedelta(days=1))
    assert run(app, contract.VISITS_DUE)["escalate_overdue"] == 1
    assert run(app, contract.VISITS_DUE)["escalate_overdue"] == 0
    [late] = [r for r in sent(app) if r["reason"] == "overdue"]
    [visit] = [v for v in visits(app) if v.due_on.isoformat() == "2026-12-02"]
    assert late["ref"] == f"welfare:{visit.id}:overdue" and late["category"] == "welfare"
    assert visit.escalated_at is not None and visit.outcome is None


def test_a_bad_outcome_message_is_refused_and_changes_nothing(app):
    plan(app, add_resident(app))
    run(app, contract.VISITS_DUE)
    with app.app_context():
        task = app.extensions["celery"].tasks[contract.VISIT_OUTCOME]
        bad = contract.envelope(contract.VISIT_OUTCOME, {"visit_ref": "visit:1", "outcome": "done", "actor": "x"},
                                source="volunteers")
        bad["data"]["outcome"] = "fine"  # past the producer's own check
        assert task.apply(args=[bad]).get() == "dead"
    assert [v.outcome for v in visits(app)] == [None]


# --- the daily check-in (报平安) ---


def checkin_plan(app, clock, **over) -> str:
    token = secrets.token_urlsafe(16)
    plan(app, add_resident(app, **over), checkin_daily=True, checkin_token_digest=contract.link_digest(token))
    run(app, contract.VISITS_DUE)  # the plan's first visit goes out today
    return token


def test_a_resident_checks_in_with_one_tap_on_their_own_link(app, clock):
    token = checkin_plan(app, clock)
    client = app.test_client()
    page = client.get(f"/checkin/{token}")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert re.search(r'<body class="[^"]*\belder\b', page.text)
    assert "王秀英" not in page.text  # no name on a link that may be passed on
    done = client.post(f"/checkin/{token}", data={"csrf_token": csrf_token(page.text)})
    assert done.status_code == 200
    with app.app_context():
        [row] = app.extensions["db"].Session.scalars(select(CheckIn)).all()
        assert row.on.isoformat() == "2026-12-02"
    # Twice the same day is one check-in.
    client.post(f"/checkin/{token}", data={"csrf_token": csrf_token(page.text)})
    with app.app_context():
        assert app.extensions["db"].Session.scalar(select(func.count()).select_from(CheckIn)) == 1
    assert client.get("/checkin/" + secrets.token_urlsafe(16)).status_code == 404


def test_no_check_in_by_the_deadline_sends_a_visitor_that_day_once(app, clock):
    token = checkin_plan(app, clock, room="501", name="赵玉珍")
    checkin_plan(app, clock, room="502", name="孙凤英")
    clock.advance(timedelta(days=1, hours=-1))  # 08:00 the next morning: before the deadline (10:00)
    client = app.test_client()
    page = client.get(f"/checkin/{token}")
    client.post(f"/checkin/{token}", data={"csrf_token": csrf_token(page.text)})
    assert run(app, contract.VISITS_DUE)["missed_checkins"] == 0
    clock.advance(timedelta(hours=2, minutes=1))  # 10:01
    assert run(app, contract.VISITS_DUE)["missed_checkins"] == 1
    assert run(app, contract.VISITS_DUE)["missed_checkins"] == 0
    [sent_visitor] = [r for r in sent(app) if r["reason"] == "missed_checkin"]
    assert sent_visitor["contact_name"] == "孙凤英" and sent_visitor["urgency"] == "urgent"
    assert sent_visitor["window_start"] is not None


# --- staff read plans in their scope ---


def test_plans_are_read_only_in_scope_overdue_first_and_every_read_is_logged(app, clock):
    plan(app, add_resident(app, building="3", unit="1", room="301", grid="G1", name="一网格三幢"))
    plan(app, add_resident(app, building="3", unit="2", room="201", grid="G1", name="一网格三幢二单元"))
    plan(app, add_resident(app, building="40", unit="1", room="101", grid="G2", name="二网格"))
    run(app, contract.VISITS_DUE)
    clock.advance(timedelta(days=1))
    outcome(app, visits(app)[0].id, "done")  # 三幢一单元 visited; the two others are now overdue
    client = app.test_client()

    def names(**claims):
        resp = client.get("/api/v1/visit-plans", headers=console_for(app, **claims))
        assert resp.status_code == 200, resp.text
        return [p["resident_name"] for p in resp.get_json()]

    assert names(role="admin") == ["一网格三幢二单元", "二网格", "一网格三幢"]
    assert names(role="grid_leader", grid="G2") == ["二网格"]
    assert names(role="hallway_leader", stairwells=("3:1",)) == ["一网格三幢"]
    overdue = client.get("/api/v1/visit-plans?overdue=true", headers=console_for(app, role="grid_leader",
                                                                                 grid="G1")).get_json()
    assert [(p["resident_name"], p["overdue_since"]) for p in overdue] == [("一网格三幢二单元", "2026-12-02")]
    assert overdue[0]["phone"] == "13800001111" and overdue[0]["place"]["room"] == "201"
    with app.app_context():
        log = app.extensions["db"].Session.scalars(select(RegisterAccess).order_by(RegisterAccess.id)).all()
        assert [(r.actor, r.action, r.rows) for r in log] == [
            ("staff:1", "visits", 3), ("staff:1", "visits", 1), ("staff:1", "visits", 1), ("staff:1", "visits", 1)]
    # Without the console's claims, nothing.
    assert client.get("/api/v1/visit-plans").status_code == 401
