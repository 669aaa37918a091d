"""The office registers and edits volunteers and imports rosters in the
console: checked at once with the contract's schemas, sent to matching as
tasks (the envelope the console staged, consumed by matching's own task
function), carried out once, within the grid of a grid leader, and read
back from matching's API to say when the change has taken effect."""
from __future__ import annotations

import io
import re

import pytest
from openpyxl import Workbook
from sqlalchemy import select

from services.common import contract
from services.volunteers import tasks as matching_tasks
from services.volunteers.models import StaffChange, Volunteer
from tests.conftest import csrf_token
from tests.factories import add_staff, console_reads, outbox_messages, register, staff_signed_in

FORM = {"name": "李医生", "display_name": "李医生", "phone": "13911112222", "building": "3", "unit": "1",
        "skills": ["health_check", "haircut"], "verified": ["health_check"], "teams": "达式华医疗服务队",
        "days_off": "2026-12-24", "capacity": "2", "channels": "json://127.0.0.1:9/hook", "language": "zh-CN",
        "active": "1", "window_rows": "3", "window-0-weekday": "5", "window-0-start": "09:00",
        "window-0-end": "11:00"}


@pytest.fixture
def intake(make_app):
    return make_app("requests", setup=add_staff)


@pytest.fixture
def matching(make_app, intake, monkeypatch):
    app = make_app("volunteers")
    console_reads(monkeypatch, app)
    return app


def post(client, path, data, **kwargs):
    page = client.get(path)
    assert page.status_code == 200, page.text
    return client.post(path, data={**data, "csrf_token": csrf_token(page.text)}, **kwargs)


def deliver(matching, message, task=matching_tasks.staff_action):
    """Matching's own task function, in process, on the envelope the console staged."""
    with matching.app_context():
        return task.apply(args=[message]).get()


def resent(message, **changes) -> dict:
    """The same change in a new envelope (as a producer would build it again)."""
    _, data = contract.open_envelope(message["type"], message)
    return contract.envelope(message["type"], {**data, **changes}, source="requests")


def volunteer_by_phone(matching, phone):
    with matching.app_context():
        session = matching.extensions["db"].Session
        vol = session.scalar(select(Volunteer).where(Volunteer.phone == phone))
        if vol is not None:
            session.refresh(vol)
        return vol


def test_the_office_registers_a_volunteer_and_sees_when_it_has_taken_effect(intake, matching):
    office = staff_signed_in(intake, "admin")
    sent = post(office, "/staff/volunteers/new", FORM)
    assert sent.status_code == 303
    waiting = office.get(sent.headers["Location"])
    assert 'data-state="waiting"' in waiting.text and waiting.headers["Refresh"] == "5"
    [message] = outbox_messages(intake, contract.STAFF_ACTION)
    data = message["data"]
    assert data["action"] == "register" and data["grid"] is None and re.match(r"staff:\d+", data["actor"])
    assert data["volunteer"]["windows"] == [{"weekday": 5, "start": "09:00", "end": "11:00"}]
    assert deliver(matching, message) == "done"
    vol = volunteer_by_phone(matching, "13911112222")
    assert (vol.capacity, vol.teams, vol.skill_codes) == (2, ["达式华医疗服务队"], ["haircut", "health_check"])
    [credential] = vol.credentials
    assert (credential.category, credential.verified_by) == ("health_check", data["actor"])
    assert credential.verified_at is not None
    assert [d.day.isoformat() for d in vol.days_off] == ["2026-12-24"]
    done = office.get(sent.headers["Location"])
    assert 'data-state="done"' in done.text and "Refresh" not in done.headers
    assert "社区办公室" in done.text  # who verified the credential, by name
    assert "139****2222" in done.text and "13911112222" not in done.text
    assert "json://127.0.0.1:9/****" in done.text and "hook" not in done.text
    # The API gives the verifier and the time too.
    with matching.app_context():
        api = matching.test_client().get(f"/api/v1/volunteers/{vol.id}",
                                         headers={"Authorization": f"Bearer {matching.config['ADMIN_TOKEN']}"}).json
    assert api["credentials"][0]["verified_by"] == data["actor"] and api["credentials"][0]["verified_at"]
    # The same task twice (a redelivery, or a re-sent copy): one volunteer.
    assert deliver(matching, message) == "duplicate"
    copy = resent(message)  # a new envelope, same change
    assert deliver(matching, copy) == "done"
    with matching.app_context():
        session = matching.extensions["db"].Session
        assert len(session.scalars(select(Volunteer).where(Volunteer.phone == "13911112222")).all()) == 1
        assert session.get(StaffChange, data["change_id"]).outcome == "done"


def test_field_errors_show_next_to_each_field_and_nothing_is_sent(intake, matching):
    office = staff_signed_in(intake, "admin")
    bad = {**FORM, "phone": "12345", "building": "", "capacity": "99", "skills": [], "verified": ["health_check"],
           "window-0-end": "08:00", "channels": "http://example.com", "days_off": "soon"}
    resp = post(office, "/staff/volunteers/new", bad)
    assert resp.status_code == 422
    for field in ("phone", "building", "capacity", "skills", "window-0", "channels", "days_off"):
        assert f'id="{field}-error"' in resp.text, field
    assert "请输入11位手机号" in resp.text or "11" in resp.text
    assert 'value="12345"' in resp.text  # what was typed stays
    assert outbox_messages(intake, contract.STAFF_ACTION) == []


def test_a_registered_phone_is_refused_at_once_and_again_by_matching(intake, matching):
    register(matching, phone="13911112222")
    office = staff_signed_in(intake, "admin")
    resp = post(office, "/staff/volunteers/new", FORM)
    assert resp.status_code == 422 and 'id="phone-error"' in resp.text
    assert outbox_messages(intake, contract.STAFF_ACTION) == []
    # Had two desks registered the same phone at once, matching refuses the second.
    message = contract.envelope(contract.STAFF_ACTION, {
        "action": "register", "actor": "staff:1", "change_id": "9f0b3c86-3b5d-4d0e-9d3a-5c7f0f7f0a01",
        "volunteer": contract.VolunteerIn().load({**{k: FORM[k] for k in ("name", "phone", "building", "unit")},
                                                  "skills": ["haircut"]})}, source="requests")
    assert deliver(matching, message) == "done"
    page = office.get("/staff/volunteers/changes/9f0b3c86-3b5d-4d0e-9d3a-5c7f0f7f0a01")
    assert 'data-state="refused"' in page.text  # another member's change: the office sees all
    assert "registered already" in page.text or "已登记" in page.text
    with matching.app_context():
        change = matching.extensions["db"].Session.get(StaffChange, "9f0b3c86-3b5d-4d0e-9d3a-5c7f0f7f0a01")
        assert (change.outcome, change.reason) == ("refused", "phone_taken")


def test_a_grid_leader_registers_in_their_grid_only(intake, matching):
    g1 = staff_signed_in(intake, "g1")
    outside = post(g1, "/staff/volunteers/new", {**FORM, "building": "14"})
    assert outside.status_code == 422 and 'id="building-error"' in outside.text
    assert outbox_messages(intake, contract.STAFF_ACTION) == []
    assert post(g1, "/staff/volunteers/new", FORM).status_code == 303
    [message] = outbox_messages(intake, contract.STAFF_ACTION)
    assert message["data"]["grid"] == "G1"
    # Matching enforces it again: a G1 leader's registration in G2 is refused.
    _, data = contract.open_envelope(contract.STAFF_ACTION, message)
    deliver(matching, resent(message, change_id="0b0b3c86-3b5d-4d0e-9d3a-5c7f0f7f0a02",
                             volunteer={**data["volunteer"], "building": "14", "unit": "1", "phone": "13911113333"}))
    assert volunteer_by_phone(matching, "13911113333") is None
    # Hallway leaders read only.
    hall = staff_signed_in(intake, "hall")
    assert hall.get("/staff/volunteers/new").status_code == 403
    assert hall.get("/staff/volunteers/import").status_code == 403


def test_the_office_edits_every_field_and_a_grid_leader_not_another_grids(intake, matching):
    vid = register(matching, phone="13911114444", building="3", unit="1", skills=["haircut"])
    far = register(matching, phone="13911115555", building="14", unit="1")
    office = staff_signed_in(intake, "admin")
    form = {**FORM, "phone": "", "channels": "", "name": "王师傅", "display_name": "王师傅",
            "skills": ["haircut", "prenatal_guidance"], "verified": ["prenatal_guidance"]}
    assert post(office, f"/staff/volunteers/{vid}", form).status_code == 303
    [message] = outbox_messages(intake, contract.STAFF_ACTION)
    assert message["data"]["action"] == "update" and "phone" not in message["data"]["changes"]
    assert "channels" not in message["data"]["changes"]  # empty: kept as registered
    deliver(matching, message)
    vol = volunteer_by_phone(matching, "13911114444")
    assert (vol.name, vol.verified_codes, vol.channels) == ("王师傅", ["prenatal_guidance"],
                                                            ["json://127.0.0.1:9/hook"])
    assert vol.credentials[0].verified_by == message["data"]["actor"]
    page = office.get(f"/staff/volunteers/{vid}")
    assert 'id="credentials"' in page.text and "社区办公室" in page.text
    g1 = staff_signed_in(intake, "g1")
    assert g1.get(f"/staff/volunteers/{far}").status_code == 403


def workbook(rows) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(["name", "phone", "building", "unit", "skills", "windows"])
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


ROSTER = [["张三", "13922220001", "3", "1", "haircut", "Sat 09:00-11:00"],
          ["李四", "123", "99", "1", "haircut", "someday"],
          ["王五", "13922220003", "4", "1", "sharpening 理发", ""]]


def upload(client, data, name="roster.xlsx", mode="all"):
    return post(client, "/staff/volunteers/import", {"mode": mode, "file": (io.BytesIO(data), name)},
                content_type="multipart/form-data")


def test_a_roster_with_a_bad_row_shows_its_row_and_sends_nothing_unless_asked(intake, matching):
    office = staff_signed_in(intake, "admin")
    resp = upload(office, workbook(ROSTER))
    assert resp.status_code == 422
    assert 'data-row="3"' in resp.text and 'data-row="2"' not in resp.text
    assert 'data-row="4"' in resp.text  # 理发 is no service code
    for field in ("phone", "building", "windows"):
        assert f"<td>{field}</td>" in resp.text
    assert outbox_messages(intake, contract.ROSTER_IMPORT) == []
    # The valid rows only: one task with them.
    resp = upload(office, workbook(ROSTER), mode="valid")
    assert resp.status_code == 200
    [message] = outbox_messages(intake, contract.ROSTER_IMPORT)
    assert message["data"]["row_numbers"] == [2] and message["data"]["rows"][0]["phone"] == "13922220001"
    change = re.search(r'href="(/staff/volunteers/changes/[^"]+)"', resp.text).group(1)
    assert 'data-state="waiting"' in office.get(change).text
    assert deliver(matching, message, matching_tasks.roster_import) == "done"
    assert deliver(matching, message, matching_tasks.roster_import) == "duplicate"
    copy = resent(message)
    deliver(matching, copy, matching_tasks.roster_import)  # re-sent: carried out once
    with matching.app_context():
        assert len(matching.extensions["db"].Session.scalars(
            select(Volunteer).where(Volunteer.phone == "13922220001")).all()) == 1
    done = office.get(change)
    assert 'data-state="done"' in done.text and "1" in done.text


def test_a_roster_past_the_bounds_is_refused_whole(make_app, matching, monkeypatch):
    intake = make_app("requests", setup=add_staff, ROSTER_MAX_ROWS=2)
    office = staff_signed_in(intake, "admin")
    resp = upload(office, workbook(ROSTER))
    assert resp.status_code == 413 and 'id="file-error"' in resp.text
    assert upload(office, b"name,phone\n", name="roster.txt").status_code == 422


def test_a_grid_leaders_roster_rows_outside_their_grid_are_errors(intake, matching):
    g1 = staff_signed_in(intake, "g1")
    rows = [ROSTER[0], ["赵六", "13922220009", "14", "1", "haircut", ""]]
    resp = upload(g1, workbook(rows), mode="valid")
    assert 'data-row="3"' in resp.text
    [message] = outbox_messages(intake, contract.ROSTER_IMPORT)
    assert message["data"]["grid"] == "G1" and message["data"]["row_numbers"] == [2]


def test_the_migration_keeps_credentials_and_runs_both_ways(make_app, backend):
    """v0003office: a credential verified before it keeps its verification
    (verifier and time unknown); staff changes get their table; and back."""
    from alembic import command
    from sqlalchemy import inspect, text

    from services.common.db import Database
    from services.volunteers import VERSIONS
    from services.volunteers.models import Base

    app = make_app("volunteers", backend=backend)
    vid = register(app, skills=["health_check"], verified=["health_check"])
    db = Database(app.config["DATABASE_URL"])
    cfg = db.alembic_config(VERSIONS, Base.metadata)
    command.downgrade(cfg, "v0003hourscorrection")
    assert "staff_change" not in inspect(db.engine).get_table_names()
    assert "verified_by" not in {c["name"] for c in inspect(db.engine).get_columns("volunteer_skill")}
    command.upgrade(cfg, "head")
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT verified, verified_by, verified_at FROM volunteer_skill"
                                " WHERE volunteer_id = :v"), {"v": vid}).one()
        assert (bool(row[0]), row[1], row[2]) == (True, None, None)
        assert conn.execute(text("SELECT count(*) FROM staff_change")).scalar() == 0
    db.engine.dispose()
    page = app.test_client().get(f"/api/v1/volunteers/{vid}",
                                 headers={"Authorization": f"Bearer {app.config['ADMIN_TOKEN']}"}).json
    assert page["credentials"] == [{"skill": "health_check", "verified_by": None, "verified_at": None}]


def test_no_full_phone_number_in_any_log_line_or_url(intake, matching, caplog):
    from services.common.web import JsonFormatter

    caplog.set_level("INFO")
    office = staff_signed_in(intake, "admin")
    sent = post(office, "/staff/volunteers/new", FORM)
    assert "13911112222" not in sent.headers["Location"]
    [message] = outbox_messages(intake, contract.STAFF_ACTION)
    deliver(matching, message)
    office.get(sent.headers["Location"])
    lines = [JsonFormatter().format(r) for r in caplog.records]
    assert lines and not [line for line in lines if "13911112222" in line]


def test_matching_refuses_an_update_to_a_known_phone_or_below_the_tasks_in_hand(intake, matching):
    first = register(matching, phone="13911116666", capacity=3)
    register(matching, phone="13911117777")
    base = {"action": "update", "actor": "staff:1", "volunteer_id": first}
    taken = contract.envelope(contract.STAFF_ACTION, {**base, "change_id": "1b0b3c86-3b5d-4d0e-9d3a-5c7f0f7f0a03",
                                                      "changes": {"phone": "13911117777"}}, source="requests")
    deliver(matching, taken)
    with matching.app_context():
        session = matching.extensions["db"].Session
        assert session.get(StaffChange, "1b0b3c86-3b5d-4d0e-9d3a-5c7f0f7f0a03").reason == "phone_taken"
        session.get(Volunteer, first).active_tasks = 2
        session.commit()
    busy = contract.envelope(contract.STAFF_ACTION, {**base, "change_id": "2b0b3c86-3b5d-4d0e-9d3a-5c7f0f7f0a04",
                                                     "changes": {"capacity": 1}}, source="requests")
    assert deliver(matching, busy) == "done"  # refused, recorded, not retried
    assert volunteer_by_phone(matching, "13911116666").capacity == 3
    with matching.app_context():
        change = matching.extensions["db"].Session.get(StaffChange, "2b0b3c86-3b5d-4d0e-9d3a-5c7f0f7f0a04")
        assert change.reason == "busy"
