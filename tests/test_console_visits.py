"""Visits in the console: a grid leader works through the overdue list read
from the community service in their scope and records what was found; the
office sets a plan with the daily check-in and gets the resident's link
once; a hallway leader records a visit on its request's page. Each change
leaves intake as a task that the community service's real consumer applies."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.common import contract
from services.common.clock import SetClock
from services.community.models import Visit, VisitPlan
from services.requests.models import OutboxMessage as IntakeOutbox
from services.requests.models import ServiceRequest
from tests.conftest import csrf_token
from tests.factories import add_staff, service_reads, staff_sign_in
from tests.test_community_visits import T0, add_resident, plan, run, visits
from tests.test_programme_requests import programme_request


@pytest.fixture
def clock():
    return SetClock(T0)


@pytest.fixture
def community(make_app, clock):
    return make_app("community", clock=clock)


@pytest.fixture
def intake(make_app, monkeypatch, community):
    app = make_app("requests", setup=add_staff)
    service_reads(monkeypatch, app, community=community)
    return app


def handed_over(intake, community, task_name) -> list[str]:
    """Intake's messages of this task, to the community service's consumer."""
    with intake.app_context():
        envelopes = [r.envelope for r in intake.extensions["db"].Session.scalars(
            select(IntakeOutbox).where(IntakeOutbox.task_name == task_name).order_by(IntakeOutbox.created_at))]
    with community.app_context():
        task = community.extensions["celery"].tasks[task_name]
        return [task.apply(args=[env]).get() for env in envelopes]


def test_a_grid_leader_works_through_overdue_visits_and_records_one(intake, community, clock):
    plan(community, add_resident(community, building="3", unit="1", room="301", grid="G1", name="王秀英"))
    plan(community, add_resident(community, building="40", unit="1", room="101", grid="G2", name="二网格的"))
    run(community, contract.VISITS_DUE)
    clock.advance(timedelta(days=2))
    client, _ = staff_sign_in(intake, "g1")
    page = client.get("/staff/visits?overdue=1")
    assert page.status_code == 200
    assert "王秀英" in page.text and "二网格的" not in page.text
    assert 'href="tel:13800001111"' in page.text and "逾期" in page.text
    mine = next(v for v in visits(community) if v.due_on.isoformat() == "2026-12-02" and v.plan_id == 1)
    theirs = next(v for v in visits(community) if v.plan_id == 2)

    # The office works through one grid at a time.
    office, _ = staff_sign_in(intake, "admin")
    g2 = office.get("/staff/visits?overdue=1&grid=G2").text
    assert "二网格的" in g2 and "王秀英" not in g2
    assert 'option value="G1"' in g2 and 'option value="G1"' not in page.text  # a grid leader has one grid

    # Another grid's visit: not found, nothing sent.
    token = csrf_token(page.text)
    assert client.post(f"/staff/visits/{theirs.id}/outcome", data={"outcome": "done", "csrf_token": token}
                       ).status_code == 404
    missing = client.post(f"/staff/visits/{mine.id}/outcome", data={"csrf_token": token})
    assert missing.status_code == 422 and "请说明探访情况" in missing.text
    done = client.post(f"/staff/visits/{mine.id}/outcome", data={"outcome": "nobody_home", "note": "敲门没人应",
                                                                  "csrf_token": token})
    assert done.status_code == 303
    assert handed_over(intake, community, contract.VISIT_OUTCOME) == ["done"]
    recorded = next(v for v in visits(community) if v.id == mine.id)
    assert (recorded.outcome, recorded.note, recorded.recorded_by) == ("nobody_home", "敲门没人应", "staff:2")


def test_the_office_sets_a_plan_with_the_daily_check_in_and_gets_the_link_once(intake, community):
    rid = add_resident(community)
    client, _ = staff_sign_in(intake, "admin")
    form = client.get(f"/staff/visits/plan/{rid}")
    assert form.status_code == 200 and "结对" in form.text
    bad = client.post(f"/staff/visits/plan/{rid}", data={"rhythm": "daily", "visitor": "paired_volunteer",
                                                         "csrf_token": csrf_token(form.text)})
    assert bad.status_code == 422 and 'aria-invalid="true" aria-describedby="rhythm-error"' in bad.text
    unpaired = client.post(f"/staff/visits/plan/{rid}", data={"rhythm": "weekly", "visitor": "paired_volunteer",
                                                              "csrf_token": csrf_token(form.text)})
    assert unpaired.status_code == 422 and 'id="volunteer_id-error"' in unpaired.text
    assert "请选择结对志愿者" in unpaired.text
    saved = client.post(f"/staff/visits/plan/{rid}", data={
        "rhythm": "twice_monthly", "visitor": "any_volunteer", "checkin_daily": "true", "new_link": "true",
        "active": "true", "csrf_token": csrf_token(form.text)})
    assert saved.status_code == 200
    link = re.search(r'id="checkin-link">.*?href="([^"]+)"', saved.text, re.S).group(1)
    assert link.startswith(intake.config["COMMUNITY_URL"] + "/checkin/")
    with intake.app_context():
        [sent] = [r.envelope["data"] for r in intake.extensions["db"].Session.scalars(
            select(IntakeOutbox).where(IntakeOutbox.task_name == contract.VISIT_PLAN))]
    token = link.rsplit("/", 1)[1]
    assert token not in str(sent) and sent["checkin_token_digest"] == contract.link_digest(token)
    assert handed_over(intake, community, contract.VISIT_PLAN) == ["done"]
    with community.app_context():
        made = community.extensions["db"].Session.scalar(select(VisitPlan))
        assert (made.rhythm, made.checkin_daily, made.created_by) == ("twice_monthly", True, "staff:1")
    # The page now says it took effect, and the link works on the community service.
    again = client.get(f"/staff/visits/plan/{rid}")
    assert 'id="plan-state"' in again.text and "社区服务已收到" in again.text and token not in again.text
    assert community.test_client().get(f"/checkin/{token}").status_code == 200


def test_a_hallway_leader_cannot_set_plans(intake, community):
    rid = add_resident(community)
    client, _ = staff_sign_in(intake, "hall")
    form = client.get(f"/staff/visits/plan/{rid}")
    assert client.post(f"/staff/visits/plan/{rid}", data={"rhythm": "weekly", "visitor": "any_volunteer",
                                                          "csrf_token": csrf_token(form.text)}).status_code == 403


def test_a_hallway_leader_records_the_visit_on_its_request_and_the_request_is_done(intake, community):
    with intake.app_context():
        task = intake.extensions["celery"].tasks[contract.PROGRAMME_REQUEST]
        assert task.apply(args=[programme_request(first_to="hallway")]).get() == "done"
        req_id = intake.extensions["db"].Session.scalar(select(ServiceRequest.id))
    client, _ = staff_sign_in(intake, "hall")
    page = client.get(f"/staff/requests/{req_id}")
    assert page.status_code == 200 and 'id="visit-outcome"' in page.text
    done = client.post(f"/staff/requests/{req_id}/visit-outcome",
                       data={"outcome": "needs_attention", "note": "想要助浴服务", "csrf_token": csrf_token(page.text)})
    assert done.status_code == 303
    with intake.app_context():
        s = intake.extensions["db"].Session
        assert s.get(ServiceRequest, req_id).status == "closed"
        [told] = [r.envelope["data"] for r in s.scalars(select(IntakeOutbox).where(
            IntakeOutbox.task_name == contract.VISIT_OUTCOME))]
    assert told["visit_ref"] == "visit:12" and told["outcome"] == "needs_attention" and told["actor"] == "staff:4"
    # Nobody may record a visit on an ordinary request.
    with community.app_context():
        assert community.extensions["db"].Session.scalar(select(Visit)) is None
