"""The community register (住户台账): scope on every list, detail, export
and lookup; care needs and disability sealed at rest and shown only when
asked for; every look in the access log; the console's changes and
register files arriving as tasks, carried out once; duplicates flagged;
the proxy intake's lookup; the demo register's figures and seed time."""
from __future__ import annotations

import io
import re
import time
import uuid
from datetime import date

import pytest
from cryptography.fernet import InvalidToken
from openpyxl import Workbook
from sqlalchemy import select, text

from services.common import contract
from services.common.clock import SHANGHAI
from services.common.register_file import HEADERS
from services.community import demo
from services.community import tasks as community_tasks
from services.community.models import Household, RegisterAccess, RegisterChange, Resident
from services.community.sealed import fernet_for
from tests.conftest import SECRETS, csrf_token
from tests.factories import STAFF, add_staff, console_for, console_reads, outbox_messages, staff_signed_in

ADMIN = {"actor": "staff:1", "role": "admin", "grid": None, "stairwells": []}
GRAN = {"name": "王桂英", "sex": "female", "birth_year": 1941, "relation": "head", "phone": "13812340001",
        "lives_alone": True, "care_need": "partial", "disability": "听力残疾", "reach_by": "hallway_leader",
        "emergency_name": "王建国", "emergency_relation": "子女", "emergency_phone": "13812340002",
        "consent_contact": True, "consent_on": date(2026, 3, 1), "consent_how": "in_person"}


def deliver(app, task_name, data, task=None):
    """The task as a producer sends it (the contract's envelope), run by the community's own task function."""
    message = contract.envelope(task_name, data, source="requests")
    task = task or (community_tasks.register_change if task_name == contract.REGISTER_CHANGE
                    else community_tasks.register_import)
    with app.app_context():
        return task.apply(args=[message]).get()


def change(app, action, scope=ADMIN, **payload) -> RegisterChange:
    change_id = str(uuid.uuid4())
    assert deliver(app, contract.REGISTER_CHANGE, {"change_id": change_id, "action": action, **scope,
                                                   **payload}) == "done"
    with app.app_context():
        return app.extensions["db"].Session.get(RegisterChange, change_id)


def household(app, building, unit, room, residents=(), phones=("13900000001",)) -> int:
    made = change(app, "add_household", household={"building": building, "unit": unit, "floor": int(room[0]),
                                                   "room": room, "tenure": "owner", "phones": list(phones)})
    assert made.outcome == "applied", made.detail
    for person in residents:
        assert change(app, "add_resident", household_id=made.household_id, resident=person).outcome == "applied"
    return made.household_id


def person(name, birth_year=1980, **over):
    return {"name": name, "sex": "male", "birth_year": birth_year, **over}


@pytest.fixture
def community(make_app, backend):
    app = make_app("community", backend=backend)
    app.households = {
        "3:1": household(app, "3", "1", "302", [GRAN, person("李明")]),
        "3:2": household(app, "3", "2", "101", [person("赵强", 1950, reach_by="call")], phones=("13900000002",)),
        "13:1": household(app, "13", "1", "501", [person("孙丽", 1990, sex="female")], phones=("13900000003",)),
    }
    return app


def api(app, path, **claims):
    headers = console_for(app, **claims) if claims else STAFF
    return app.test_client().get(path, headers=headers)


def ids(resp):
    assert resp.status_code == 200, resp.text
    return sorted(h["id"] for h in resp.get_json())


def accesses(app) -> list[RegisterAccess]:
    with app.app_context():
        return app.extensions["db"].Session.scalars(select(RegisterAccess).order_by(RegisterAccess.id)).all()


# --- scope ---


def test_scope_holds_on_every_list_detail_export_and_lookup(community):
    h = community.households
    assert ids(api(community, "/api/v1/households")) == sorted(h.values())
    assert ids(api(community, "/api/v1/households", role="grid_leader", grid="G1")) == sorted([h["3:1"], h["3:2"]])
    assert ids(api(community, "/api/v1/households", role="grid_leader", grid="G2")) == [h["13:1"]]
    assert ids(api(community, "/api/v1/households", role="hallway_leader", stairwells=["3:1"])) == [h["3:1"]]
    # A filter never widens the scope.
    assert ids(api(community, "/api/v1/households?grid=G1", role="grid_leader", grid="G2")) == []
    for path in (f"/api/v1/households/{h['3:1']}", f"/api/v1/households/{h['3:1']}?sealed=true"):
        assert api(community, path, role="grid_leader", grid="G2").status_code == 403
        assert api(community, path, role="hallway_leader", stairwells=["3:2"]).status_code == 403
        assert api(community, path, role="hallway_leader", stairwells=["3:1"]).status_code == 200
    assert api(community, "/api/v1/households/999999", role="admin").status_code == 404
    detail = api(community, f"/api/v1/households/{h['3:1']}").get_json()
    gran = next(p for p in detail["people"] if p["name"] == "王桂英")
    assert api(community, f"/api/v1/residents/{gran['id']}", role="grid_leader", grid="G2").status_code == 403
    export = api(community, "/api/v1/households/export?format=csv", role="hallway_leader", stairwells=["3:1"])
    lines = export.data.decode("utf-8-sig").splitlines()
    assert lines[0].split(",")[:4] == ["楼幢", "单元", "楼层", "室号"] and len(lines) == 3  # the header, 2 residents
    assert all(line.startswith("3,1,") for line in lines[1:])
    assert api(community, "/api/v1/households/export?format=csv", role="grid_leader",
               grid="G9").data.decode("utf-8-sig").count("\n") == 1
    room = "/api/v1/residents/lookup?building=3&unit=1&room=302"
    assert len(api(community, room, role="hallway_leader", stairwells=["3:1"]).get_json()) == 2
    assert api(community, room, role="grid_leader", grid="G2").get_json() == []
    # Without the console's claims nobody reads the register, nor with a bad token.
    assert community.test_client().get("/api/v1/households").status_code == 401
    bad_token = {"Authorization": "Bearer nope"}
    assert community.test_client().get("/api/v1/households", headers=bad_token).status_code == 401


def test_lists_show_age_bands_and_masked_phones_and_filter_by_age_and_living_alone(community):
    h = community.households
    [row] = api(community, "/api/v1/households?lives_alone=true").get_json()
    assert row["id"] == h["3:1"] and row["lives_alone"] and row["over_60"] == 1
    assert row["phones"] == ["139****0001"]
    assert {r["age_band"] for r in row["residents"]} == {"80+", "18-59"}
    assert all("birth_year" not in r and "care_need" not in r for r in row["residents"])
    assert ids(api(community, "/api/v1/households?age_band=70-79")) == [h["3:2"]]
    assert ids(api(community, "/api/v1/households?search=0003")) == [h["13:1"]]
    assert ids(api(community, "/api/v1/households?search=101")) == [h["3:2"]]
    assert api(community, "/api/v1/households?search=13900000003").status_code == 422  # never a whole number


# --- sealed fields and the access log ---


def test_care_needs_and_disability_are_sealed_at_rest_and_open_with_the_key(community):
    with community.app_context():
        session = community.extensions["db"].Session
        raw = session.execute(text("SELECT care_need, disability FROM resident WHERE name = '王桂英'")).one()
    assert "partial" not in raw[0] and "听力" not in raw[1] and raw[0].startswith("gAAAA")
    key = fernet_for(SECRETS["REGISTER_KEY"])
    assert key.decrypt(raw[0].encode()).decode() == "partial"
    assert key.decrypt(raw[1].encode()).decode() == "听力残疾"
    with pytest.raises(InvalidToken):  # another key does not open it
        fernet_for("another-register-key-0123456789abcdef").decrypt(raw[0].encode())


def test_sealed_fields_only_when_asked_and_every_look_is_logged(community):
    hid = community.households["3:1"]
    before = len(accesses(community))
    plain = api(community, f"/api/v1/households/{hid}", role="grid_leader", grid="G1", staff_id=7).get_json()
    assert all("care_need" not in p and "disability" not in p for p in plain["people"])
    sealed = api(community, f"/api/v1/households/{hid}?sealed=true", role="grid_leader", grid="G1",
                 staff_id=7).get_json()
    gran = next(p for p in sealed["people"] if p["name"] == "王桂英")
    assert (gran["care_need"], gran["disability"], gran["birth_year"]) == ("partial", "听力残疾", 1941)
    one = api(community, f"/api/v1/residents/{gran['id']}?sealed=true", role="grid_leader", grid="G1", staff_id=7)
    assert one.get_json()["care_need"] == "partial"
    api(community, "/api/v1/households", role="grid_leader", grid="G1", staff_id=7)
    api(community, "/api/v1/households/export?format=xlsx&sealed=true", role="grid_leader", grid="G1", staff_id=7)
    api(community, "/api/v1/residents/lookup?building=3&unit=1&room=302", role="grid_leader", grid="G1", staff_id=7)
    api(community, f"/api/v1/households/{hid}", role="grid_leader", grid="G2", staff_id=8)  # refused: no look
    logged = [(a.actor, a.action, a.sensitive, a.rows) for a in accesses(community)[before:]]
    assert logged == [("staff:7", "view", False, 2), ("staff:7", "view", True, 2), ("staff:7", "view", True, 1),
                      ("staff:7", "list", False, 2), ("staff:7", "export", True, 3), ("staff:7", "lookup", False, 2)]


# --- changes from the console, as tasks ---


@pytest.fixture
def intake(make_app):
    return make_app("requests", setup=add_staff)


@pytest.fixture
def console(intake, community, monkeypatch):
    console_reads(monkeypatch, community)
    return staff_signed_in(intake, "admin")


def post(client, path, data, page=None, **kwargs):
    form = client.get(page or path)
    assert form.status_code == 200, form.text
    return client.post(path, data={**data, "csrf_token": csrf_token(form.text)}, **kwargs)


def staged(intake, task_name):
    return outbox_messages(intake, task_name)


def run(community, message, task=community_tasks.register_change):
    with community.app_context():
        return task.apply(args=[message]).get()


def test_a_console_change_arrives_as_a_task_once_and_the_console_sees_it_take_effect(intake, community, console):
    sent = post(console, "/staff/register/households/new",
                {"building": "13", "unit": "2", "floor": "6", "room": "602", "floor_area": "72.5",
                 "tenure": "tenant", "phones": "13900000009 0571-88886666"})
    assert sent.status_code == 303, sent.text
    waiting = console.get(sent.headers["Location"])
    assert 'data-state="waiting"' in waiting.text and waiting.headers["Refresh"] == "5"
    [message] = staged(intake, contract.REGISTER_CHANGE)
    assert message["data"]["action"] == "add_household" and message["data"]["role"] == "admin"
    assert run(community, message) == "done"
    assert run(community, message) == "duplicate"  # the same envelope again
    again = contract.envelope(contract.REGISTER_CHANGE, contract.open_envelope(message["type"], message)[1],
                              source="requests")
    assert run(community, again) == "done"  # a new envelope, the same change id: no second household
    with community.app_context():
        session = community.extensions["db"].Session
        made = session.scalars(select(Household).where(Household.room == "602")).all()
        assert len(made) == 1 and made[0].tenure == "tenant" and float(made[0].floor_area) == 72.5
        assert sorted(p.phone for p in made[0].phones) == ["0571-88886666", "13900000009"]
    done = console.get(sent.headers["Location"])
    assert 'data-state="applied"' in done.text and "Refresh" not in done.headers


def test_a_bad_form_is_refused_field_by_field_and_nothing_is_sent(intake, console):
    sent = post(console, "/staff/register/households/new",
                {"building": "3", "unit": "9", "floor": "x", "room": "三〇二", "phones": "12345"})
    assert sent.status_code == 422
    for field in ("unit", "floor", "room", "phones"):
        assert f'id="{field}-error"' in sent.text
    assert staged(intake, contract.REGISTER_CHANGE) == []


def test_residents_are_added_edited_and_closed_keeping_their_history(intake, community, console):
    hid = community.households["3:1"]
    page = console.get(f"/staff/register/households/{hid}")
    assert page.status_code == 200 and "王桂英" in page.text and "听力残疾" not in page.text
    sent = post(console, f"/staff/register/households/{hid}/residents",
                {"name": "王小明", "sex": "male", "birth_year": "2015", "relation": "grandchild",
                 "care_need": "none", "reach_by": "text"}, page=f"/staff/register/households/{hid}")
    assert sent.status_code == 303
    assert run(community, staged(intake, contract.REGISTER_CHANGE)[-1]) == "done"
    gran_id = next(p["id"] for p in api(community, f"/api/v1/households/{hid}").get_json()["people"]
                   if p["name"] == "王桂英")
    edit = console.get(f"/staff/register/residents/{gran_id}")
    assert "听力残疾" in edit.text  # shown for changing, and logged as sensitive
    assert accesses(community)[-1].sensitive
    closed = post(console, f"/staff/register/residents/{gran_id}/close", {"reason": "deceased"},
                  page=f"/staff/register/residents/{gran_id}")
    assert closed.status_code == 303
    assert run(community, staged(intake, contract.REGISTER_CHANGE)[-1]) == "done"
    moved = post(console, f"/staff/register/households/{hid}/close", {}, page=f"/staff/register/households/{hid}")
    assert run(community, staged(intake, contract.REGISTER_CHANGE)[-1]) == "done"
    assert moved.status_code == 303
    with community.app_context():
        session = community.extensions["db"].Session
        people = {r.name: (r.closed_reason, r.closed_at is not None) for r in
                  session.scalars(select(Resident).where(Resident.household_id == hid))}
    assert people == {"王桂英": ("deceased", True), "李明": ("moved_out", True), "王小明": ("moved_out", True)}
    assert hid not in ids(api(community, "/api/v1/households"))
    assert hid in ids(api(community, "/api/v1/households?status=closed"))
    history = console.get(f"/staff/register/households/{hid}")
    assert "已故" in history.text and "已搬离" in history.text


def test_a_change_outside_the_askers_area_is_refused_and_recorded(community):
    hid = community.households["3:1"]
    refused = change(community, "edit_household", scope={"actor": "staff:3", "role": "grid_leader", "grid": "G2",
                                                          "stairwells": []},
                     household_id=hid, household={"building": "3", "unit": "1", "floor": 3, "room": "303"})
    assert (refused.outcome, refused.detail["reason"]) == ("refused", "out_of_scope")
    answer = api(community, f"/api/v1/register-changes/{refused.change_id}", role="grid_leader", grid="G2",
                 staff_id=3)
    assert answer.get_json()["outcome"] == "refused"
    # Someone else's change is not theirs to read.
    assert api(community, f"/api/v1/register-changes/{refused.change_id}", role="grid_leader", grid="G2",
               staff_id=4).status_code == 404
    with community.app_context():
        assert community.extensions["db"].Session.get(Household, hid).room == "302"


# --- the office's file ---


def workbook(rows) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(list(HEADERS))
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def file_row(building, unit, room, name, year, phones="", **over):
    values = {"楼幢": building, "单元": unit, "楼层": int(room[0]), "室号": room, "面积": 60, "产权": "自有",
              "户电话": phones, "姓名": name, "性别": "女", "出生年份": year, "与户主关系": "户主", "独居": "否",
              **over}
    return [values.get(h, "") for h in HEADERS]


GOOD_FILE = [file_row("3", "3", "201", "钱秀英", 1945, "13911110001", 独居="是", 失能情况="半失能"),
             file_row("3", "3", "201", "钱明", 1975, "13911110001", 与户主关系="子女"),
             file_row("3", "3", "202", "周平", 1960, "13911110001")]  # one phone, two rooms: flagged
BAD_ROW = file_row("3", "9", "203", "", "一九四五")


def upload(console, rows, mode="all"):
    return post(console, "/staff/register/import", {"mode": mode, "file": (io.BytesIO(workbook(rows)), "台账.xlsx")},
                content_type="multipart/form-data")


def test_a_register_file_with_a_bad_row_imports_nothing_unless_partial(intake, community, console):
    refused = upload(console, GOOD_FILE + [BAD_ROW])
    assert refused.status_code == 422
    table = refused.text.split('id="register-errors"', 1)[1].split("</table>", 1)[0]
    errors = re.findall(r'<tr data-row="(\d+)">\s*<td>\d+</td><td>([^<]+)</td>', table)
    assert {row for row, _ in errors} == {"5"} and {"单元", "姓名", "出生年份"} <= {col for _, col in errors}
    assert staged(intake, contract.REGISTER_IMPORT) == []
    partial = upload(console, GOOD_FILE + [BAD_ROW], mode="valid")
    assert partial.status_code == 200 and "register-duplicates" in partial.text
    [message] = staged(intake, contract.REGISTER_IMPORT)
    assert message["data"]["row_numbers"] == [2, 3, 4]
    assert run(community, message, community_tasks.register_import) == "done"
    with community.app_context():
        session = community.extensions["db"].Session
        qian = session.scalar(select(Resident).where(Resident.name == "钱秀英"))
        assert (qian.lives_alone, qian.care_need, qian.household.room) == (True, "partial", "201")
        assert session.scalar(select(RegisterChange).where(RegisterChange.kind == "import")).detail == {
            "households": 2, "residents": 3, "updated": 0}
    flagged = api(community, "/api/v1/households?duplicates=true").get_json()
    assert {h["room"] for h in flagged} == {"201", "202"} and all(h["duplicate"] == ["phone"] for h in flagged)
    # The same file again updates, adds nobody.
    assert upload(console, GOOD_FILE).status_code == 200
    assert run(community, staged(intake, contract.REGISTER_IMPORT)[-1], community_tasks.register_import) == "done"
    with community.app_context():
        assert len(community.extensions["db"].Session.scalars(select(Resident)).all()) == 7


def test_an_exported_register_imports_again_as_it_is(intake, community, console):
    exported = console.get("/staff/register?format=xlsx")
    assert exported.status_code == 200
    resent = post(console, "/staff/register/import", {"mode": "all", "file": (io.BytesIO(exported.data), "r.xlsx")},
                  content_type="multipart/form-data")
    assert resent.status_code == 200, resent.text
    assert run(community, staged(intake, contract.REGISTER_IMPORT)[-1], community_tasks.register_import) == "done"
    with community.app_context():
        assert community.extensions["db"].Session.scalar(
            select(RegisterChange).where(RegisterChange.kind == "import")).detail == {
            "households": 0, "residents": 0, "updated": 4}
        # The download left the sealed columns empty: what the register holds stays.
        gran = community.extensions["db"].Session.scalar(select(Resident).where(Resident.name == "王桂英"))
        assert (gran.care_need, gran.disability, gran.lives_alone) == ("partial", "听力残疾", True)


def test_hallway_leaders_edit_their_stairwells_but_do_not_import(intake, community, monkeypatch):
    console_reads(monkeypatch, community)
    hall = staff_signed_in(intake, "hall")
    listed = hall.get("/staff/register")
    assert listed.status_code == 200
    assert "302" in listed.text and "101" not in listed.text and "501" not in listed.text
    assert hall.get(f"/staff/register/households/{community.households['3:2']}").status_code == 403
    assert hall.get("/staff/register/import").status_code == 403


# --- proxy intake's lookup ---


def test_proxy_intake_fills_the_resident_from_the_register_by_room_or_phone(intake, community, console):
    by_room = post(console, "/staff/new/lookup", {"lk_building": "3", "lk_unit": "2", "lk_room": "101"},
                   page="/staff/new")
    assert by_room.status_code == 200 and 'id="lookup-filled"' in by_room.text
    assert 'value="赵强"' in by_room.text
    # "Hearing back" follows the register: 赵强 prefers a call, 王桂英 is reached through her hallway leader.
    assert checked_messages(by_room.text) == "call"
    several = post(console, "/staff/new/lookup", {"lk_phone": "139 0000 0001"}, page="/staff/new")
    assert 'id="lookup-matches"' in several.text and "王桂英" in several.text
    pick = re.search(r'href="(/staff/new\?resident=\d+)"', several.text).group(1)
    picked = console.get(pick)
    assert 'value="王桂英"' in picked.text and 'value="13812340001"' in picked.text
    assert checked_messages(picked.text) == "none"
    nobody = post(console, "/staff/new/lookup", {"lk_phone": "13700000000"}, page="/staff/new")
    assert 'id="lookup-message"' in nobody.text
    lookups = [a for a in accesses(community) if a.action == "lookup"]
    assert [a.rows for a in lookups] == [1, 2, 0] and all(a.actor.startswith("staff:") for a in lookups)


def checked_messages(page: str) -> str:
    [choice] = re.findall(r'name="messages" value="(\w+)" checked', page)
    return choice


def test_the_lookup_takes_the_phones_keyed_digest_never_the_number(community):
    digest = contract.phone_digest("13812340001", SECRETS["PHONE_DIGEST_KEY"])
    [found] = api(community, f"/api/v1/residents/lookup?phone_digest={digest}").get_json()
    assert (found["name"], found["room"], found["phone"]) == ("王桂英", "302", "13812340001")
    assert api(community, "/api/v1/residents/lookup?phone_digest=13812340001").status_code == 422
    assert api(community, "/api/v1/residents/lookup").get_json() == []  # no criterion, nobody


# --- console pages in zh-CN, in words ---

CODES = ("moved_out", "deceased", "hallway_leader", "grandchild", "in_person", "partial", "owner", "tenant",
         "female", "80+", "60-69", "None")


def visible(html: str) -> str:
    html = re.sub(r"<(script|style)[\s\S]*?</\1>", "", html)
    return re.sub(r"<[^>]+>", " ", html)


def test_register_pages_render_in_chinese_with_words_not_codes(intake, community, console):
    hid = community.households["3:1"]
    for path in ("/staff/register", f"/staff/register/households/{hid}", f"/staff/register/households/{hid}?sealed=1",
                 "/staff/register/households/new", "/staff/register/import", "/staff/new"):
        page = console.get(path)
        assert page.status_code == 200, path
        words = visible(page.text)
        assert not [c for c in CODES if re.search(rf"(?<![\w+-]){re.escape(c)}(?![\w+-])", words)], path
    assert "住户台账" in console.get("/staff/register").text
    assert "半失能" in console.get(f"/staff/register/households/{hid}?sealed=1").text


# --- the demo register ---


def test_the_demo_register_is_faithful_to_the_communitys_figures_and_quick(make_app, backend, capsys):
    app = make_app("community", backend=backend)
    with app.app_context():
        session = app.extensions["db"].Session
        started = time.perf_counter()
        summary = demo.seed_register(session, {**app.config, "DEMO": True})
        session.commit()
        seconds = time.perf_counter() - started
        assert demo.seed_register(session, {**app.config, "DEMO": True}) == "demo register present"
        year = app.extensions["clock"].now().astimezone(SHANGHAI).year
        figures = demo.figures(session, year)
        buildings = {(h.building, h.unit) for h in session.scalars(select(Household))}
    with capsys.disabled():
        print(f"\n[{backend}] {summary}; measured {seconds:.2f} s; figures {figures}")
    assert figures["households"] == 3146 and figures["residents"] == 10000
    assert 0.235 <= figures["over_60"] / figures["residents"] <= 0.241
    assert 0.12 <= figures["over_60_alone"] / figures["over_60"] <= 0.15
    assert len({b for b, _ in buildings}) == 69
    if backend == "sqlite":
        assert seconds < 5
    with app.app_context():
        session = app.extensions["db"].Session
        assert demo.remove_demo_rows(session) == 3146
        session.commit()
        assert session.scalar(select(Resident.id)) is None


def test_the_household_list_with_the_demo_register_loads_quickly(make_app, intake, monkeypatch, capsys):
    app = make_app("community")
    with app.app_context():
        session = app.extensions["db"].Session
        demo.seed_register(session, {**app.config, "DEMO": True})
        session.commit()
    console_reads(monkeypatch, app)
    office = staff_signed_in(intake, "admin")
    office.get("/staff/register")  # warm
    timings = []
    for path in ("/staff/register", "/staff/register?age_band=80%2B&lives_alone=1", "/staff/register?page=40",
                 "/staff/register?duplicates=1"):
        started = time.perf_counter()
        page = office.get(path)
        timings.append((path, time.perf_counter() - started))
        assert page.status_code == 200
    assert "3146" in office.get("/staff/register").text
    with capsys.disabled():
        print("\n" + "; ".join(f"{p}: {s * 1000:.0f} ms" for p, s in timings))
    assert max(s for _, s in timings) < 2
