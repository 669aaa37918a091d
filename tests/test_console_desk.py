"""The console as a desk tool (#16): requests handed to a named leader
(and "handed to me"), time coins spent and the monthly hours record,
a volunteer's message channels removed — each from the console's form to
the service that owns the data."""
from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.common import contract
from services.requests.models import ServiceRequest, StaffMember
from services.volunteers.models import Assignment, CoinEntry, StaffChange, Volunteer
from services.volunteers.timebank import TimeBank
from tests.conftest import csrf_token
from tests.factories import (
    NOW,
    RESIDENT,
    World,
    add_staff,
    console_for,
    console_reads,
    outbox_messages,
    register,
    staff_signed_in,
    submitted,
)

G1_BUILDING, G2_BUILDING = "3", "14"  # grids G1 and G2 of the demo community


@pytest.fixture
def app(make_app):
    return make_app("requests", setup=add_staff)


def submit(app, building, **changes) -> str:
    resp = app.test_client().post("/api/v1/requests", json={**RESIDENT, "building": building, **changes})
    assert resp.status_code == 201, resp.text
    return resp.get_json()["id"]


def actor_of(app, username) -> str:
    with app.app_context():
        return app.extensions["db"].Session.scalar(
            select(StaffMember).where(StaffMember.username == username)).actor


def handler_of(app, request_id) -> str | None:
    with app.app_context():
        s = app.extensions["db"].Session
        s.expire_all()
        return s.get(ServiceRequest, request_id).handler


def hand_over(client, ids, handler, query=""):
    token = csrf_token(client.get("/staff/").text)
    return client.post(f"/staff/bulk{query}", data={"ids": ids, "action": "hand_over", "handler": handler,
                                                    "csrf_token": token})


def waiting_badge(page: str) -> int:
    found = re.search(r'id="waiting-count"[^>]*>([^<]*)<', page)
    return int(re.search(r"\d+", found.group(1)).group()) if found else 0


def queue_ids(page: str) -> list[str]:
    table = page.split('id="queue"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'data-request="([0-9a-f-]{36})"', table)


# --- handing requests to a named leader ---


def test_the_office_hands_requests_to_a_named_hallway_leader_who_finds_them_as_theirs(app):
    a, b = submit(app, G1_BUILDING), submit(app, G1_BUILDING)
    hall, admin = actor_of(app, "hall"), staff_signed_in(app, "admin")
    chooser = admin.get("/staff/").text.split('id="handler"', 1)[1].split("</select>", 1)[0]
    # The named grid and hallway leaders, by name and role in words; the office itself is not one.
    assert "3幢1单元楼道长" in chooser and "一网格" in chooser and "二网格" in chooser
    assert "社区办公室" not in chooser and "hallway_leader" not in chooser.split(">", 1)[1]
    resp = hand_over(admin, [a], hall, query="?sort=due")
    back = resp.headers["Location"]
    assert resp.status_code == 303 and "done=handed" in back and "sort=due" in back
    assert handler_of(app, a) == hall and handler_of(app, b) is None
    # Shown on the queue and on the request page, as a name; the timeline says who handed it.
    row = admin.get("/staff/").text.split(f'data-request="{a}"', 1)[1].split("</tr>", 1)[0]
    assert "3幢1单元楼道长" in row
    detail = admin.get(f"/staff/requests/{a}").text
    assert "3幢1单元楼道长" in detail.split('id="handler"', 1)[1].split("</dd>", 1)[0]
    assert "已交给指定负责人" in detail
    # The hallway leader: "handed to me" shows it, and the count of what waits for them counts it.
    mine = staff_signed_in(app, "hall")
    assert queue_ids(mine.get("/staff/?mine=1").text) == [a]
    with app.app_context():  # taken by staff: no longer waiting for anyone, except whom it was handed to
        s = app.extensions["db"].Session
        for rid in (a, b):
            s.get(ServiceRequest, rid).taken_at = s.get(ServiceRequest, rid).created_at
        s.commit()
    assert waiting_badge(mine.get("/staff/").text) == 1
    assert queue_ids(mine.get("/staff/?waiting=1").text) == [a]
    assert waiting_badge(staff_signed_in(app, "g1").get("/staff/").text) == 0
    assert queue_ids(staff_signed_in(app, "g1").get("/staff/?mine=1").text) == []


def test_a_request_is_handed_only_to_a_leader_whose_area_holds_it(app):
    g1_req, g2_req = submit(app, G1_BUILDING), submit(app, G2_BUILDING)
    admin = staff_signed_in(app, "admin")
    refused = hand_over(admin, [g1_req, g2_req], actor_of(app, "g1"))
    assert refused.status_code == 422 and 'id="handler-error"' in refused.text
    assert handler_of(app, g1_req) is None and handler_of(app, g2_req) is None  # nothing half done
    nobody = hand_over(admin, [g1_req], "")
    assert nobody.status_code == 422 and 'id="handler-error"' in nobody.text
    # A grid leader chooses among their own grid's leaders only, and a hallway leader hands nothing.
    g1 = staff_signed_in(app, "g1")
    chooser = g1.get("/staff/").text.split('id="handler"', 1)[1].split("</select>", 1)[0]
    assert "3幢1单元楼道长" in chooser and "二网格" not in chooser
    assert hand_over(g1, [g1_req], actor_of(app, "g2")).status_code == 422
    assert hand_over(g1, [g1_req], actor_of(app, "hall")).status_code == 303
    assert handler_of(app, g1_req) == actor_of(app, "hall")
    hall = staff_signed_in(app, "hall")
    assert 'id="handler"' not in hall.get("/staff/").text
    assert hand_over(hall, [g1_req], actor_of(app, "hall")).status_code == 403


# --- time coins (时间银行) spent, recorded by the office ---


@pytest.fixture
def matching(make_app, monkeypatch, backend):
    """Matching's app answering the console's reads in process (SQLite and PostgreSQL: coins are decimals)."""
    app = make_app("volunteers", backend=backend)
    console_reads(monkeypatch, app)
    return app


def with_coins(matching, amount: str) -> int:
    """A volunteer (building 3, grid G1) whose confirmed hours earned `amount` coins."""
    vid = register(matching)
    with matching.app_context():
        s = matching.extensions["db"].Session
        s.add(CoinEntry(volunteer_id=vid, amount=Decimal(amount), kind="earned", ref="hours:test"))
        s.commit()
    return vid


def spend(client, vid, **form):
    page = client.get(f"/staff/volunteers/{vid}")
    assert page.status_code == 200, page.text
    return client.post(f"/staff/volunteers/{vid}/coins", data={**form, "csrf_token": csrf_token(page.text)})


def deliver(app, matching, task_name) -> list[str]:
    """Each of intake's messages of this task, handed to matching's real consumer twice."""
    outcomes = []
    with matching.app_context():
        task = matching.extensions["celery"].tasks[task_name]
        for env in outbox_messages(app, task_name):
            outcomes += [task.apply(args=[env]).get(), task.apply(args=[env]).get()]
    return outcomes


def coins_of(matching, vid) -> list[tuple[Decimal, str, str]]:
    with matching.app_context():
        s = matching.extensions["db"].Session
        return [(c.amount, c.kind, c.ref) for c in s.scalars(
            select(CoinEntry).where(CoinEntry.volunteer_id == vid).order_by(CoinEntry.id))]


def test_the_office_records_coins_spent_and_the_page_tells_when_matching_has(app, matching):
    vid = with_coins(matching, "3.0")
    admin = staff_signed_in(app, "admin")
    page = admin.get(f"/staff/volunteers/{vid}").text
    assert "3.0" in page.split('id="coin-balance"', 1)[1].split("</p>", 1)[0] and 'id="spend-form"' in page
    resp = spend(admin, vid, amount="2", ref="理发一次")
    assert resp.status_code == 303
    status = resp.headers["Location"]
    waiting = admin.get(status)
    assert 'data-state="waiting"' in waiting.text and waiting.headers["Refresh"] == "5"
    [message] = outbox_messages(app, contract.COINS_SPEND)
    assert message["data"]["volunteer_id"] == vid and message["data"]["amount"] == "2.0"
    assert message["data"]["actor"] == actor_of(app, "admin")
    assert deliver(app, matching, contract.COINS_SPEND) == ["done", "duplicate"]
    # The same change sent again in a new envelope (the console asking twice) spends nothing more.
    again = contract.envelope(contract.COINS_SPEND, contract.CoinsSpend().load(message["data"]), "requests")
    with matching.app_context():
        assert matching.extensions["celery"].tasks[contract.COINS_SPEND].apply(args=[again]).get() == "done"
    assert coins_of(matching, vid) == [(Decimal("3.0"), "earned", "hours:test"), (Decimal("-2.0"), "spent", "理发一次")]
    done = admin.get(status).text
    assert 'data-state="done"' in done and "理发一次" in done and "1.0" in done
    assert "1.0" in admin.get(f"/staff/volunteers/{vid}").text.split('id="coin-balance"', 1)[1].split("</p>", 1)[0]


def test_spending_more_than_the_balance_is_refused_and_the_page_says_so(app, matching):
    vid = with_coins(matching, "1.0")
    admin = staff_signed_in(app, "admin")
    status = spend(admin, vid, amount="1.5", ref="修自行车").headers["Location"]
    assert deliver(app, matching, contract.COINS_SPEND) == ["done", "duplicate"]
    assert coins_of(matching, vid) == [(Decimal("1.0"), "earned", "hours:test")]
    page = admin.get(status).text
    refused = page.split('id="change-status"', 1)[1].split("</div>", 1)[0]
    assert 'data-state="refused"' in refused and 'role="alert"' in page
    assert "时间币不足" in refused and "1.0" in refused


def test_a_spending_form_with_errors_sends_nothing_and_only_the_office_spends(app, matching):
    vid = with_coins(matching, "5.0")
    admin = staff_signed_in(app, "admin")
    bad = spend(admin, vid, amount="0.3", ref="")
    assert bad.status_code == 422
    assert 'id="spend-amount-error"' in bad.text and 'id="spend-ref-error"' in bad.text
    assert 'aria-invalid="true" aria-describedby="spend-amount-error"' in bad.text
    assert 'id="spend-amount" name="amount" type="number" step="0.5" min="0.5" max="1000" inputmode="decimal" ' \
           'value="0.3"' in bad.text  # what was typed stays in the box
    # A grid leader reads the balance of their grid's volunteer, but does not spend for them.
    g1 = staff_signed_in(app, "g1")
    page = g1.get(f"/staff/volunteers/{vid}").text
    assert 'id="coin-balance"' in page and 'id="spend-form"' not in page
    token = csrf_token(page)
    assert g1.post(f"/staff/volunteers/{vid}/coins", data={"amount": "1", "ref": "x", "csrf_token": token}
                   ).status_code == 403
    assert not outbox_messages(app, contract.COINS_SPEND)
    # Matching answers a volunteer's coins only within the reader's scope.
    assert matching.test_client().get(f"/api/v1/volunteers/{vid}/coins",
                                      headers=console_for(matching, "grid_leader", grid="G2")).status_code == 404


# --- the month's hours record, from matching through the console ---


def confirmed_hours(matching, building="3") -> int:
    """A volunteer of `building` with one confirmed hour in November 2026 (Hangzhou time)."""
    world = World(matching)
    vid = register(matching, building=building, unit="1")
    req = world.receive(submitted(building=building))
    world.at(NOW).accept(world.offers(req.id)[0])
    task = world.session.scalar(select(Assignment).where(Assignment.request_id == req.id))
    world.at(NOW + timedelta(minutes=5)).start(task)
    entry = world.at(NOW + timedelta(minutes=65)).complete(task, 60, "理好了")
    TimeBank(world.session, NOW + timedelta(hours=2)).confirm_hours(entry, by="staff:1")
    world.session.commit()
    world.session.close()
    return vid


def test_the_hours_record_is_streamed_from_matching_within_the_members_scope(app, matching):
    g1_vol, g2_vol = confirmed_hours(matching, "3"), confirmed_hours(matching, "14")
    admin = staff_signed_in(app, "admin")
    page = admin.get("/staff/office/hours").text
    assert 'id="hours-export"' in page and 'action="/staff/office/hours/export"' in page
    resp = admin.get("/staff/office/hours/export?month=2026-11&format=csv")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Content-Disposition"] == "attachment; filename=hours-record-2026-11.csv"
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True).lstrip("\ufeff"))))
    assert sorted(int(r["volunteer_id"]) for r in rows) == sorted([g1_vol, g2_vol])
    assert all(r["hours"] == "1.0" for r in rows)
    xlsx = admin.get("/staff/office/hours/export?month=2026-11&format=xlsx")
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"
    # A grid leader gets their grid's record: matching applies the claims the console sent.
    g1 = staff_signed_in(app, "g1").get("/staff/office/hours/export?month=2026-11&format=csv")
    assert [int(r["volunteer_id"]) for r in csv.DictReader(io.StringIO(g1.get_data(as_text=True).lstrip("\ufeff")))
            ] == [g1_vol]
    assert staff_signed_in(app, "hall").get("/staff/office/hours/export?month=2026-11").status_code == 403
    assert admin.get("/staff/office/hours/export?month=2026-13&format=csv").status_code == 400
    assert admin.get("/staff/office/hours/export?month=2026-11&format=json").status_code == 400


def test_the_hours_record_says_so_when_matching_cannot_answer(app, monkeypatch):
    from services.common import web

    def unreachable(*args, **kwargs):
        raise web.http.ConnectionError("down")

    monkeypatch.setattr(web.http, "get", unreachable)
    resp = staff_signed_in(app, "admin").get("/staff/office/hours/export?month=2026-11&format=csv")
    assert resp.status_code == 502 and 'id="export-failed"' in resp.text and 'role="alert"' in resp.text


# --- a volunteer's message channels removed ---

CHANNELS = ["json://127.0.0.1:9/hook", "mailto://127.0.0.1:25?from=a@b.cn&to=c@d.cn", "wecombot://KEY"]
EDIT = {"name": "王建国", "phone": "", "building": "3", "unit": "1", "language": "zh-CN", "skills": ["haircut"],
        "capacity": "1", "active": "1", "channels": "", "window_rows": "0"}


def edit(client, vid, **form):
    page = client.get(f"/staff/volunteers/{vid}")
    assert page.status_code == 200, page.text
    return client.post(f"/staff/volunteers/{vid}", data={**EDIT, **form, "csrf_token": csrf_token(page.text)})


def carry_out(app, matching) -> str:
    """The console's latest registry change, through matching's real consumer; matching's outcome."""
    message = outbox_messages(app, contract.STAFF_ACTION)[-1]
    with matching.app_context():
        matching.extensions["celery"].tasks[contract.STAFF_ACTION].apply(args=[message]).get()
        change = matching.extensions["db"].Session.get(StaffChange, message["data"]["change_id"])
        return change.outcome if change.reason is None else change.reason


def channels_of(matching, vid) -> list[str]:
    with matching.app_context():
        s = matching.extensions["db"].Session
        s.expire_all()
        return s.get(Volunteer, vid).channels


@pytest.fixture
def registry(make_app, monkeypatch):
    app = make_app("volunteers")
    console_reads(monkeypatch, app)
    return app


def test_the_office_removes_one_channel_and_then_all_of_them(app, registry):
    vid = register(registry, channels=CHANNELS)
    admin = staff_signed_in(app, "admin")
    page = admin.get(f"/staff/volunteers/{vid}").text
    shown = page.split('id="channel-list"', 1)[1].split("</fieldset>", 1)[0]
    assert shown.count('name="remove_channels"') == 3 and "wecombot://****" in shown and "KEY" not in shown
    assert edit(admin, vid, remove_channels=["1"]).status_code == 303
    assert carry_out(app, registry) == "done"
    assert channels_of(registry, vid) == [CHANNELS[0], CHANNELS[2]]
    # Every one ticked: none left (the form's empty channels box alone keeps them).
    assert edit(admin, vid).status_code == 303 and carry_out(app, registry) == "done"
    assert channels_of(registry, vid) == [CHANNELS[0], CHANNELS[2]]
    assert edit(admin, vid, remove_channels=["0", "1"]).status_code == 303
    assert outbox_messages(app, contract.STAFF_ACTION)[-1]["data"]["changes"]["channels"] == []
    assert carry_out(app, registry) == "done"
    assert channels_of(registry, vid) == []
    assert 'id="channel-list"' not in admin.get(f"/staff/volunteers/{vid}").text


def test_a_removal_is_refused_when_the_channels_changed_meanwhile(app, registry):
    vid = register(registry, channels=CHANNELS)
    admin = staff_signed_in(app, "admin")
    assert edit(admin, vid, remove_channels=["2"]).status_code == 303
    with registry.app_context():  # meanwhile, the list changes under the page
        s = registry.extensions["db"].Session
        s.get(Volunteer, vid).channels = CHANNELS[:2]
        s.commit()
    assert carry_out(app, registry) == "channels_changed"
    assert channels_of(registry, vid) == CHANNELS[:2]
    change_id = outbox_messages(app, contract.STAFF_ACTION)[-1]["data"]["change_id"]
    page = admin.get(f"/staff/volunteers/changes/{change_id}").text
    assert 'data-state="refused"' in page and "渠道" in page.split('id="change-status"', 1)[1].split("</div>", 1)[0]
