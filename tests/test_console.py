"""The staff console: accounts, sign-in limits, sessions, scope (no IDOR),
CSRF, the hotline loop (timers, extension, hand-backs, follow-up, rates),
proxy intake, privacy (access log, withdrawal, retention)."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from services.common import contract
from services.requests import hotline, operations, staff
from services.requests.models import ContactAccess, OutboxMessage, ServiceRequest, StaffMember
from tests.conftest import ADMIN_TOKEN, VOLUNTEERS_TOKEN, csrf_token
from tests.factories import PASSWORD, RESIDENT, add_staff
from tests.factories import staff_sign_in as sign_in
from tests.factories import staff_signed_in as signed_in

G1_BUILDING, G2_BUILDING = "3", "14"  # grids G1 and G2 of the demo community
COOKIE = "linli_requests_session"


@pytest.fixture
def app(make_app):
    # The accounts are made once, in the session's template (argon2 is slow on purpose).
    return make_app("requests", setup=add_staff)


def submit(app, building, **changes):
    resp = app.test_client().post("/api/v1/requests", json={**RESIDENT, "building": building, **changes})
    assert resp.status_code == 201, resp.text
    return resp.get_json()["id"]


def action(client, request_id, name, **form):
    page = client.get(f"/staff/requests/{request_id}")
    assert page.status_code == 200, page.text
    return client.post(f"/staff/requests/{request_id}/{name}", data={**form, "csrf_token": csrf_token(page.text)})


def complete(app, *request_ids):
    """As matching's status changes would: assigned, then completed."""
    with app.app_context():
        for rid in request_ids:
            req = get_request(app, rid)
            req.move_to("assigned", actor="volunteer:1")
            req.move_to("completed", actor="volunteer:1")
        app.extensions["db"].Session.commit()


def get_request(app, request_id) -> ServiceRequest:
    return app.extensions["db"].Session.get(ServiceRequest, request_id)


def outbox(app, task_name):
    with app.app_context():
        rows = app.extensions["db"].Session.scalars(select(OutboxMessage)).all()
        return [r.envelope["data"] for r in rows if r.task_name == task_name]


# --- accounts and sign-in ---


def test_passwords_are_argon2_hashes(app):
    with app.app_context():
        member = app.extensions["db"].Session.scalar(select(StaffMember).where(StaffMember.username == "admin"))
        assert member.password_hash.startswith("$argon2id$")
        assert PASSWORD not in member.password_hash


def test_create_staff_command_makes_the_first_admin(make_app):
    app = make_app("requests")
    result = app.test_cli_runner().invoke(args=["create-staff", "--username", "Office", "--name", "办公室"],
                                          env={"LINLI_STAFF_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.output
    _, resp = sign_in(app, "office")
    assert resp.status_code == 303
    short = app.test_cli_runner().invoke(args=["create-staff", "--username", "x"],
                                         env={"LINLI_STAFF_PASSWORD": "short"})
    assert short.exit_code != 0 and "10 characters" in short.output


def test_console_needs_sign_in(app):
    resp = app.test_client().get("/staff/")
    assert resp.status_code == 302 and "/staff/login" in resp.headers["Location"]
    assert app.test_client().get("/api/v1/staff/requests").status_code == 401


def test_wrong_password_and_unknown_user_get_the_same_answer(app):
    _, wrong = sign_in(app, "admin", "not the password")
    _, unknown = sign_in(app, "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda html: html.split('name="csrf_token" value="')[0]  # noqa: E731
    assert strip(wrong.text) == strip(unknown.text)  # same page, same message
    assert "Sign-in failed" in wrong.text or "登录失败" in wrong.text


def test_sign_in_is_rate_limited_per_account_and_says_nothing_of_existence(app, unit_redis):
    for attempt in range(5):
        _, resp = sign_in(app, "admin", f"wrong {attempt}", addr=f"10.0.1.{attempt}")
        assert resp.status_code == 401
    _, locked = sign_in(app, "admin", PASSWORD, addr="10.0.2.1")  # even the right password
    assert locked.status_code == 429
    for attempt in range(5):
        sign_in(app, "ghost", f"wrong {attempt}", addr=f"10.0.3.{attempt}")
    _, ghost = sign_in(app, "ghost", "anything", addr="10.0.4.1")
    assert ghost.status_code == 429
    strip = lambda html: html.split('name="csrf_token" value="')[0]  # noqa: E731
    assert strip(ghost.text) == strip(locked.text)
    # The counters live in Redis and expire with the window.
    keys = unit_redis.keys("linli:login:acct:*")
    assert len(keys) == 2 and all(0 < unit_redis.ttl(k) <= 900 for k in keys)
    assert b"admin" not in b"".join(keys)


def test_sign_in_is_rate_limited_per_address(make_app):
    app = make_app("requests", LOGIN_LIMIT_ADDRESS=3)
    for name in ("a1", "a2", "a3"):
        assert sign_in(app, name, "x", addr="10.9.9.9")[1].status_code == 401
    assert sign_in(app, "a4", "x", addr="10.9.9.9")[1].status_code == 429
    assert sign_in(app, "a4", "x", addr="10.9.9.8")[1].status_code == 401


def test_strangers_guessing_cannot_lock_the_owner_out_of_their_usual_browser(app, unit_redis):
    owner, resp = sign_in(app, "admin")  # the owner's browser, signed in before
    assert resp.status_code == 303
    owner.post("/staff/logout", data={"csrf_token": csrf_token(owner.get("/staff/").text)})
    for attempt in range(5):  # someone else hammers the account from several addresses
        assert sign_in(app, "admin", f"wrong {attempt}", addr=f"10.0.5.{attempt}")[1].status_code == 401
    # A new browser is held back (guessing stays bounded)…
    assert sign_in(app, "admin", PASSWORD, addr="10.0.6.1")[1].status_code == 429
    # …but the owner's own browser signs in as usual.
    _, again = sign_in(app, "admin", PASSWORD, client=owner, addr="10.0.7.1")
    assert again.status_code == 303
    # The device cookie is no master key: it is counted on its own.
    for attempt in range(5):
        assert sign_in(app, "admin", f"typo {attempt}", client=owner, addr="10.0.7.1")[1].status_code == 401
    assert sign_in(app, "admin", PASSWORD, client=owner, addr="10.0.7.1")[1].status_code == 429


def test_a_forged_device_cookie_is_worth_nothing(app, client):
    for attempt in range(5):
        sign_in(app, "admin", f"wrong {attempt}", addr=f"10.0.8.{attempt}")
    client.set_cookie("linli_staff_device", "eyJhIjoiMSIsIm4iOiIyIn0.forged.sig", path="/staff")
    assert sign_in(app, "admin", PASSWORD, client=client, addr="10.0.8.9")[1].status_code == 429


def test_the_per_address_limit_sees_the_client_behind_the_documented_proxy(make_app):
    app = make_app("requests", LOGIN_LIMIT_ADDRESS=3, PROXY_HOPS=1)

    def attempt(name, forwarded_for):
        client = app.test_client()
        page = client.get("/staff/login")
        return client.post("/staff/login", headers={"X-Forwarded-For": forwarded_for},
                           data={"username": name, "password": "x", "csrf_token": csrf_token(page.text)},
                           environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code

    assert [attempt(n, "203.0.113.7") for n in ("b1", "b2", "b3", "b4")] == [401, 401, 401, 429]
    # Another resident behind the same proxy is not held back by it.
    assert attempt("b5", "203.0.113.8") == 401
    # A client cannot pretend to be several by adding addresses of its own:
    # only the hop the proxy appended counts.
    assert attempt("b6", "198.51.100.1, 203.0.113.7") == 429


def test_without_a_configured_proxy_forwarded_addresses_are_ignored(make_app):
    app = make_app("requests", LOGIN_LIMIT_ADDRESS=2)
    results = []
    for n, fake in enumerate(("203.0.113.1", "203.0.113.2", "203.0.113.3")):
        client = app.test_client()
        page = client.get("/staff/login")
        results.append(client.post("/staff/login", headers={"X-Forwarded-For": fake},
                                   data={"username": f"c{n}", "password": "x", "csrf_token": csrf_token(page.text)},
                                   environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code)
    assert results == [401, 401, 429]


def test_session_is_renewed_at_sign_in_and_revoked_at_sign_out(app, client):
    client.get("/staff/login")
    before = client.get_cookie(COOKIE).value  # what an attacker could have planted
    _, resp = sign_in(app, "admin", client=client)
    after = client.get_cookie(COOKIE).value
    assert resp.status_code == 303 and after != before
    cookie_header = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie_header and "SameSite=Lax" in cookie_header
    # The planted (pre-sign-in) cookie does not become a signed-in session.
    attacker = app.test_client()
    attacker.set_cookie(COOKIE, before)
    assert attacker.get("/staff/").status_code == 302
    # A copy of the signed-in cookie stops working once its owner signs out.
    thief = app.test_client()
    thief.set_cookie(COOKIE, after)
    assert thief.get("/staff/").status_code == 200
    page = client.get("/staff/")
    client.post("/staff/logout", data={"csrf_token": csrf_token(page.text)})
    assert thief.get("/staff/").status_code == 302


def test_secure_cookies_in_production(make_app):
    app = make_app("requests", SESSION_COOKIE_SECURE=True)
    with app.app_context():
        staff.create(app.extensions["db"].Session, "admin", PASSWORD, "admin", "办公室")
        app.extensions["db"].Session.commit()
    _, resp = sign_in(app, "admin")
    assert "Secure" in resp.headers["Set-Cookie"]


def test_console_pages_carry_security_headers(app):
    client = signed_in(app, "admin")
    rid = submit(app, G1_BUILDING)
    for path in ("/staff/", f"/staff/requests/{rid}", "/staff/dashboard", "/staff/access-log", "/staff/new"):
        resp = client.get(path)
        assert resp.status_code == 200, path
        assert resp.headers["Cache-Control"] == "no-store", path
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["take", "close", "cancel", "escalate", "contact"])
def test_forms_without_csrf_are_refused(app, path):
    client = signed_in(app, "admin")
    rid = submit(app, G1_BUILDING)
    resp = client.post(f"/staff/requests/{rid}/{path}", data={"note": "test note", "level": "2"})
    assert resp.status_code == 400
    with app.app_context():
        req = get_request(app, rid)
        assert req.status == "submitted" and req.taken_at is None
        assert not app.extensions["db"].Session.scalars(select(ContactAccess)).all()


def test_sign_in_without_csrf_is_refused(app):
    resp = app.test_client().post("/staff/login", data={"username": "admin", "password": PASSWORD})
    assert resp.status_code == 400


# --- scope ---


def test_grid_leader_cannot_open_or_act_on_another_grid(app):
    mine, theirs = submit(app, G1_BUILDING), submit(app, G2_BUILDING)
    g1 = signed_in(app, "g1")
    assert g1.get(f"/staff/requests/{mine}").status_code == 200
    page = g1.get(f"/staff/requests/{theirs}")
    assert page.status_code == 403 and "社区办公室" in page.text and "13812341234" not in page.text
    api = g1.get(f"/api/v1/staff/requests/{theirs}")
    assert api.status_code == 403 and api.get_json()["message"] == "outside your area"
    page = g1.get(f"/staff/requests/{mine}")
    for name, form in (("take", {}), ("close", {"note": "不是我的"}), ("contact", {}),
                       ("escalate", {"level": "3"}), ("extend", {"working_days": "2", "note": "等配件"})):
        resp = g1.post(f"/staff/requests/{theirs}/{name}", data={**form, "csrf_token": csrf_token(page.text)})
        assert resp.status_code == 403, name
    with app.app_context():
        req = get_request(app, theirs)
        assert req.status == "submitted" and req.taken_at is None and not req.extension_days
        assert not app.extensions["db"].Session.scalars(select(ContactAccess)).all()


LIST_ENDPOINTS = ["/staff/", "/staff/?format=csv", "/api/v1/staff/requests", "/staff/dashboard?export=open_by_grid",
                  "/staff/access-log?format=csv"]


def test_every_list_endpoint_is_scoped(app):
    g1_req, g2_req = submit(app, G1_BUILDING), submit(app, G2_BUILDING)
    other_stairwell = submit(app, G1_BUILDING, unit="2")
    admin = signed_in(app, "admin")
    for rid in (g1_req, g2_req, other_stairwell):  # every contact viewed once, by the admin
        action(admin, rid, "contact")
    codes = {}
    with app.app_context():
        for rid in (g1_req, g2_req, other_stairwell):
            codes[rid] = get_request(app, rid).tracking_code
    expected = {"admin": {g1_req, g2_req, other_stairwell}, "g1": {g1_req, other_stairwell}, "g2": {g2_req},
                "hall": {g1_req}}
    for user, visible in expected.items():
        client = signed_in(app, user)
        for path in LIST_ENDPOINTS:
            body = client.get(path)
            assert body.status_code == 200, (user, path)
            text = body.get_data(as_text=True)
            if path == "/staff/dashboard?export=open_by_grid":
                grids = {row["grid"] for row in csv.DictReader(io.StringIO(text.lstrip("\ufeff")))}
                assert grids == ({"G1", "G2"} if user == "admin" else {"G2"} if user == "g2" else {"G1"}), user
                continue
            for rid, code in codes.items():
                shown = code in text or rid in text
                assert shown == (rid in visible), (user, path, rid)


def test_admin_token_acts_as_admin_for_automation(app):
    rid = submit(app, G2_BUILDING)
    resp = app.test_client().get("/api/v1/staff/requests", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert resp.status_code == 200 and [r["id"] for r in resp.get_json()] == [rid]
    assert resp.get_json()[0]["masked_phone"] == "138****1234"
    assert "13812341234" not in resp.text and "302" not in json.dumps(resp.get_json()[0].get("room", ""))


def test_hallway_leader_enters_only_for_their_stairwells(app):
    hall = signed_in(app, "hall")
    page = hall.get("/staff/new")
    assert page.status_code == 200
    form = {**RESIDENT, "building": G1_BUILDING, "unit": "2", "consent": "true", "consent_method": "phone",
            "csrf_token": csrf_token(page.text)}
    refused = hall.post("/staff/new", data=form)
    assert refused.status_code == 403
    with app.app_context():
        assert app.extensions["db"].Session.scalar(select(func.count()).select_from(ServiceRequest)) == 0


# --- proxy intake ---


def test_proxy_intake_records_consent_and_who_entered_it(app):
    hall = signed_in(app, "hall")
    page = hall.get("/staff/new")
    form = {**RESIDENT, "building": G1_BUILDING, "csrf_token": csrf_token(page.text)}
    missing = hall.post("/staff/new", data={**form, "consent": "true"})
    assert missing.status_code == 422 and 'id="consent_method-error"' in missing.text
    resp = hall.post("/staff/new", data={**form, "consent": "true", "consent_method": "in_person"})
    assert resp.status_code == 303
    with app.app_context():
        req = app.extensions["db"].Session.scalar(select(ServiceRequest))
        member = app.extensions["db"].Session.scalar(select(StaffMember).where(StaffMember.username == "hall"))
        assert (req.channel, req.entered_by, req.consent_method) == ("staff", member.actor, "in_person")
        assert req.consent_at is not None and req.history[0].actor == member.actor
    assert len(outbox(app, contract.REQUEST_SUBMITTED)) == 1


# --- the hotline loop ---


def test_timers_follow_the_hotline_defaults():
    timers = hotline.timers({})
    monday_10 = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # 10:00 in Hangzhou
    take_by, due = hotline.deadlines(timers["haircut"], monday_10)
    assert take_by == monday_10 + timedelta(hours=2)
    assert due == monday_10 + timedelta(days=7)  # 5 working days from Monday: next Monday, within 7 days
    friday_23 = datetime(2026, 11, 27, 15, 0, tzinfo=timezone.utc)  # 23:00 Friday in Hangzhou
    take_by, due = hotline.deadlines(timers["haircut"], friday_23)
    assert take_by == datetime(2026, 11, 28, 2, 0, tzinfo=timezone.utc)  # 10:00 the next morning
    assert due == friday_23 + timedelta(days=7)
    _, lift_due = hotline.deadlines(timers["lift_retrofit"], monday_10)
    assert lift_due == monday_10 + timedelta(days=15)
    assert hotline.timers({"haircut": {"take_hours": 4}})["haircut"].take_hours == 4
    assert hotline.add_working_days(friday_23, 1).astimezone(hotline.SHANGHAI).weekday() == 0


def test_take_extend_and_the_resident_sees_the_reason(app):
    rid = submit(app, G1_BUILDING, category="environment")
    g1 = signed_in(app, "g1")
    assert action(g1, rid, "take").status_code == 303
    bad = action(g1, rid, "extend", working_days="11", note="等物业")
    assert bad.status_code == 422 and "延期为1至10个工作日" in bad.text
    with app.app_context():
        due_before = get_request(app, rid).due_at
    assert action(g1, rid, "extend", working_days="3", note="等物业配件").status_code == 303
    again = action(g1, rid, "extend", working_days="1", note="再等等")
    assert again.status_code == 409
    with app.app_context():
        req = get_request(app, rid)
        assert req.taken_at is not None and req.extension_days == 3
        assert req.due_at == hotline.add_working_days(due_before, 3)
        code = req.tracking_code
    page = app.test_client().get(f"/track/{code}")
    assert "等物业配件" in page.text and 'id="extension"' in page.text
    api = app.test_client().get(f"/api/v1/requests/{code}").get_json()
    assert [h.get("event") for h in api["history"]] == [None, "extended"]  # "taken" stays internal


def test_hand_backs_within_a_working_day_then_the_grid_leader_decides(app):
    rid = submit(app, G1_BUILDING, category="parking")
    with app.app_context():
        req = get_request(app, rid)
        req.move_to("escalated", actor="matching")
        app.extensions["db"].Session.commit()
    g1 = signed_in(app, "g1")
    for n in (1, 2, 3):
        assert action(g1, rid, "hand-back", note=f"不归我管 {n}").status_code == 303
    refused = action(g1, rid, "hand-back", note="还是不归我")
    assert refused.status_code == 409
    with app.app_context():
        req = get_request(app, rid)
        assert req.handbacks == 3 and req.grid_decides
    levels = [d["level"] for d in outbox(app, contract.STAFF_ACTION)]
    assert levels == [3, 3, 2]  # back to the office twice, then the grid leader decides
    # Late: more than one working day after it reached its handler.
    late = submit(app, G1_BUILDING, category="parking")
    with app.app_context():
        req = get_request(app, late)
        req.move_to("escalated", actor="matching")
        req.routed_at = req.routed_at - timedelta(days=4)
        app.extensions["db"].Session.commit()
    assert action(g1, late, "hand-back", note="太晚了").status_code == 409


def test_follow_up_reopens_when_the_resident_is_unhappy(app):
    happy, unhappy = submit(app, G1_BUILDING), submit(app, G1_BUILDING)
    complete(app, happy, unhappy)
    with app.app_context():
        codes = {rid: get_request(app, rid).tracking_code for rid in (happy, unhappy)}
    ok = app.test_client().post(f"/api/v1/requests/{codes[happy]}/feedback", json={"rating": 5, "resolved": True})
    assert ok.status_code == 201
    g1 = signed_in(app, "g1")  # the follow-up call, recorded by staff
    assert action(g1, unhappy, "follow-up", rating="2", resolved="false", comment="还是坏的").status_code == 303
    with app.app_context():
        assert get_request(app, happy).status == "completed"
        req = get_request(app, unhappy)
        assert req.status == "escalated" and req.reopened and req.finished_at is None
    reopen = [d for d in outbox(app, contract.STAFF_ACTION) if d.get("reason") == "reopened"]
    assert len(reopen) == 1 and reopen[0]["request_id"] == unhappy and reopen[0]["level"] == 2


def test_follow_up_job_asks_the_resident_the_day_after(make_app):
    from services.common.clock import SetClock
    from services.requests.tasks import follow_up

    # A plain Tuesday: the day after is a working day (tests/test_workdays.py has the holidays).
    app = make_app("requests", setup=add_staff, clock=SetClock(datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)))
    rid = submit(app, G1_BUILDING)
    complete(app, rid)
    with app.app_context():
        assert follow_up.run() == {"follow_ups": 0}  # not yet a day
        req = get_request(app, rid)
        req.completed_at -= timedelta(hours=25)
        app.extensions["db"].Session.commit()
        assert follow_up.run() == {"follow_ups": 1}
        assert follow_up.run() == {"follow_ups": 0}  # once
    sent = [d for d in outbox(app, contract.NOTIFY_SEND) if d["template"] == "follow_up"]
    assert len(sent) == 1 and sent[0]["recipient"] == f"resident:{rid}"


def test_rates_and_the_satisfaction_alert(app):
    now = datetime.now(timezone.utc)

    class Row:
        def __init__(self, grid, status, taken_late=False, rating=None, resolved=True, reopened=False):
            self.status, self.reopened, self.grid = status, reopened, grid
            self.take_by = now
            self.taken_at = now + timedelta(hours=1) if taken_late else now - timedelta(hours=1)
            self.feedback = None if rating is None else type("F", (), {"rating": rating, "resolved": resolved})

    rows = [Row("G1", "completed", rating=5), Row("G1", "completed", rating=4), Row("G1", "closed", taken_late=True),
            Row("G1", "cancelled"), Row("G2", "completed", rating=2, resolved=False, reopened=True),
            Row("G2", "escalated")]
    rates = hotline.rates(rows, key=lambda r: r.grid)
    assert (rates["G1"].requests, rates["G1"].response, rates["G1"].resolution) == (3, 2 / 3, 1.0)
    assert rates["G1"].satisfaction == 1.0 and not rates["G1"].alert
    assert rates["G2"].satisfaction == 0.0 and rates["G2"].alert and rates["G2"].resolution == 0.0


def test_dashboard_shows_rates_charts_and_alert(app):
    rid = submit(app, G1_BUILDING)
    complete(app, rid)
    admin = signed_in(app, "admin")
    action(admin, rid, "follow-up", rating="1", resolved="true")
    page = admin.get("/staff/dashboard")
    assert page.status_code == 200
    assert page.text.count("<svg") == 3 and 'id="rates_by_grid"' in page.text
    # The grid by its name, not its code.
    assert 'role="alert"' in page.text and "第1网格" in page.text.split('role="alert"')[1].split("</p>")[0]
    xlsx = admin.get("/staff/dashboard?export=rates_by_category&format=xlsx")
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"
    rows = list(csv.reader(io.StringIO(admin.get("/staff/dashboard?export=rates_by_grid").text.lstrip("\ufeff"))))
    assert rows[0][:5] == ["grid", "requests", "response_rate", "resolution_rate", "satisfaction_rate"]
    assert rows[1][0] == "G1" and rows[1][4] == "0%" and rows[1][-1] == "satisfaction < 85%"


def test_staff_actions_go_to_matching_through_the_outbox(app):
    rid = submit(app, G1_BUILDING)
    admin = signed_in(app, "admin")
    bad = action(admin, rid, "escalate", level="7")
    assert bad.status_code == 422
    assert action(admin, rid, "escalate", level="2", note="需要网格长看看").status_code == 303
    assert action(admin, rid, "close", note="电话里解决了").status_code == 303
    sent = outbox(app, contract.STAFF_ACTION)
    assert [(d["action"], d["level"]) for d in sent] == [("escalate", 2), ("close", None)]
    with app.app_context():
        member = app.extensions["db"].Session.scalar(select(StaffMember).where(StaffMember.username == "admin"))
        assert {d["actor"] for d in sent} == {member.actor}
        req = get_request(app, rid)
        assert req.status == "closed" and req.history[-1].note == "电话里解决了"


def test_refused_action_lands_in_the_timeline(app):
    from services.requests.tasks import record_refusal

    rid = submit(app, G1_BUILDING)
    with app.app_context():
        record_refusal(app.extensions["db"].Session, {"request_id": rid, "action": "assign", "actor": "staff:1",
                                                      "reason": "full"}, {})
        app.extensions["db"].Session.commit()
    page = signed_in(app, "admin").get(f"/staff/requests/{rid}")
    assert "Reassignment refused" in page.text or "改派未成功" in page.text


# --- privacy ---


def test_contact_is_masked_until_shown_and_every_look_is_logged(app):
    rid = submit(app, G1_BUILDING)
    g1 = signed_in(app, "g1")
    page = g1.get(f"/staff/requests/{rid}")
    assert "138****1234" in page.text and "13812341234" not in page.text and "张桂兰" not in page.text
    shown = action(g1, rid, "contact")
    assert "13812341234" in shown.text and "张桂兰" in shown.text
    assert shown.headers["Cache-Control"] == "no-store"
    with app.app_context():
        get_request(app, rid).status = "assigned"  # matching reads the contact only for an assigned volunteer
        app.extensions["db"].Session.commit()
    app.test_client().get(f"/api/v1/internal/requests/{rid}/contact?reader=volunteer:7",
                          headers={"Authorization": f"Bearer {VOLUNTEERS_TOKEN}"})
    with app.app_context():
        member = app.extensions["db"].Session.scalar(select(StaffMember).where(StaffMember.username == "g1"))
        log = [(a.actor, a.purpose) for a in app.extensions["db"].Session.scalars(select(ContactAccess))]
        assert log == [(member.actor, "console"), ("volunteer:7", "assigned volunteer")]
    listing = g1.get("/staff/access-log")
    assert listing.text.count("<tr>") == 3 and "一网格" in listing.text


def test_withdrawal_purges_the_contact(app):
    rid = submit(app, G1_BUILDING)
    with app.app_context():
        code = get_request(app, rid).tracking_code
    resp = app.test_client().post(f"/api/v1/requests/{code}/cancel", json={"reason": "不需要了"})
    assert resp.status_code == 200
    with app.app_context():
        req = get_request(app, rid)
        assert (req.contact_name, req.contact_phone, req.room) == ("", "", "")
        assert req.category == "haircut" and req.building_code == G1_BUILDING
    contact = app.test_client().get(f"/api/v1/internal/requests/{rid}/contact",
                                    headers={"Authorization": f"Bearer {VOLUNTEERS_TOKEN}"})
    assert contact.status_code == 410


def test_retention_anonymises_old_requests_and_keeps_the_counts(app):
    from services.requests.tasks import retention

    old, recent, open_ = submit(app, G1_BUILDING), submit(app, G1_BUILDING), submit(app, G2_BUILDING)
    complete(app, old, recent)
    with app.app_context():
        s = app.extensions["db"].Session
        operations.give_feedback(s, app.extensions["outbox"], get_request(app, old), {
            "rating": 5, "thanks": True, "comment": "谢谢张师傅，302的门铃坏了", "resolved": True})
        get_request(app, old).finished_at -= timedelta(days=181)
        get_request(app, open_).created_at -= timedelta(days=400)  # open requests are kept whole
        s.commit()
        assert retention.run() == {"anonymised": 1}
        assert retention.run() == {"anonymised": 0}
        req = get_request(app, old)
        assert (req.contact_name, req.contact_phone, req.room, req.description) == ("", "", "", "")
        assert req.feedback.comment == "" and req.feedback.rating == 5 and req.anonymised_at is not None
        assert get_request(app, recent).contact_phone == "13812341234"
        assert get_request(app, open_).contact_phone == "13812341234"
        total = s.scalar(select(func.count()).select_from(ServiceRequest))
        assert total == 3
    page = signed_in(app, "admin").get("/staff/dashboard?export=rates_by_grid")
    rows = list(csv.reader(io.StringIO(page.text.lstrip("\ufeff"))))
    assert rows[1][:2] == ["G1", "2"]  # the anonymised request still counts


def test_no_phone_or_room_in_console_logs(app, caplog):
    caplog.set_level("INFO")
    rid = submit(app, G1_BUILDING)
    admin = signed_in(app, "admin")
    action(admin, rid, "contact")
    action(admin, rid, "take")
    assert caplog.records
    for record in caplog.records:
        line = json.dumps({**record.__dict__, "msg": record.getMessage()}, default=str, ensure_ascii=False)
        assert "13812341234" not in line and "张桂兰" not in line


def test_console_reads_carry_the_signed_in_members_claims_and_none_after_sign_out(app, monkeypatch):
    """When a console page reads another service, intake sends its token and
    the claims of whoever is signed in (services.common.auth); after sign-out
    there is no page, so no read and no claims; a resident's page sends none."""
    from flask import g

    from services.common import auth, web

    sent = []

    def unreachable(url, headers, timeout):
        sent.append(dict(headers))
        raise web.http.ConnectionError("no service in this test")

    monkeypatch.setattr(web.http, "get", unreachable)
    client, _ = sign_in(app, "g1")
    assert client.get("/staff/volunteers").status_code == 200
    with app.app_context():
        signer = auth.URLSafeTimedSerializer(app.config["REQUESTS_TOKEN"], salt="linli.staff-claims")
        claims = signer.loads(sent[-1][auth.STAFF_HEADER])
    assert {k: claims[k] for k in ("role", "grid", "stairwells")} == {"role": "grid_leader", "grid": "G1",
                                                                      "stairwells": []}
    client.post("/staff/logout", data={"csrf_token": csrf_token(client.get("/staff/").text)})
    before = len(sent)
    assert client.get("/staff/volunteers").status_code == 302
    assert len(sent) == before
    with app.test_request_context():
        g.pop("acting", None)
        assert web.read_service("NOTIFY_API_URL", "/api/v1/inbox/resident:x") is None
    assert auth.STAFF_HEADER not in sent[-1]


# --- the queue as a desk tool ---


def queue_codes(page_text: str) -> list[str]:
    """The tracking codes in the queue table, top to bottom."""
    import re
    table = page_text.split('id="queue"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'/staff/requests/[0-9a-f-]{36}">([A-Z0-9]{12})</a>', table)


def codes_of(app, *request_ids) -> list[str]:
    with app.app_context():
        return [get_request(app, rid).tracking_code for rid in request_ids]


def test_queue_sorts_by_an_allow_list_of_columns(make_app, backend):
    app = make_app("requests", backend=backend, setup=add_staff)  # NULLS LAST and the join, on both databases
    env = submit(app, G1_BUILDING, category="environment")
    hair = submit(app, G1_BUILDING, category="haircut")
    bike = submit(app, G1_BUILDING, category="bicycle_repair")
    admin = signed_in(app, "admin")
    newest_first = queue_codes(admin.get("/staff/").text)
    assert newest_first == codes_of(app, bike, hair, env)
    page = admin.get("/staff/?sort=service&dir=asc")
    assert queue_codes(page.text) == codes_of(app, bike, env, hair)  # bicycle, environment, haircut
    assert 'aria-sort="ascending"' in page.text and page.text.count("aria-sort=") == 1
    assert "sort=service&amp;dir=desc" in page.text  # the sorted column's link turns it round
    assert queue_codes(admin.get("/staff/?sort=service&dir=desc").text) == codes_of(app, hair, env, bike)
    # Only the listed columns: never a column name from the address.
    assert admin.get("/staff/?sort=contact_phone").status_code == 400
    assert admin.get("/staff/?sort=service&dir=sideways").status_code == 400
    assert queue_codes(admin.get("/staff/?sort=grid").text)  # through the building's grid
    assert admin.get("/api/v1/staff/requests").status_code == 200  # the API's list, on the same statement


def test_queue_search_by_code_last_four_digits_or_room(app):
    first = submit(app, G1_BUILDING, contact_phone="13900005678", room="501")
    second = submit(app, G1_BUILDING, contact_phone="13900001234", room="1201")
    admin = signed_in(app, "admin")
    code = codes_of(app, first)[0]
    assert queue_codes(admin.get("/staff/?search=5678").text) == [code]
    assert queue_codes(admin.get("/staff/?search=1201").text) == codes_of(app, second)  # the room
    assert queue_codes(admin.get("/staff/?search=501").text) == [code]
    spaced = f"{code[:4]}-{code[4:8]} {code[8:]}".lower()  # as read over the phone
    assert queue_codes(admin.get("/staff/", query_string={"search": spaced}).text) == [code]
    assert queue_codes(admin.get("/staff/?search=9999").text) == []
    # A whole phone number is refused, not searched, and not shown back.
    whole = admin.get("/staff/?search=13900005678")
    assert whole.status_code == 422 and 'id="search-error"' in whole.text
    assert "13900005678" not in whole.text


def test_queue_pages_fifty_at_a_time_with_the_total(app):
    ids = [submit(app, G1_BUILDING) for _ in range(53)]
    admin = signed_in(app, "admin")
    first = admin.get("/staff/")
    assert len(queue_codes(first.text)) == 50
    assert "1–50" in first.text and "53" in first.text.split('id="queue-count"')[1].split("</p>")[0]
    assert 'aria-current="page">1<' in first.text and "page=2" in first.text
    second = admin.get("/staff/?page=2")
    assert len(queue_codes(second.text)) == 3 and "51–53" in second.text
    assert set(queue_codes(first.text)) | set(queue_codes(second.text)) == set(codes_of(app, *ids))
    assert len(queue_codes(admin.get("/staff/?page=99").text)) == 3  # past the end: the last page


def bulk(client, ids, what, query=""):
    token = csrf_token(client.get("/staff/").text)
    return client.post(f"/staff/bulk{query}", data={"ids": ids, "action": what, "csrf_token": token})


def test_bulk_export_downloads_the_selection_with_names_beside_codes(app):
    a, b, c = (submit(app, G1_BUILDING, category=cat) for cat in ("haircut", "parking", "umbrella_repair"))
    admin = signed_in(app, "admin")
    resp = bulk(admin, [a, c], "export_csv")
    assert resp.status_code == 200 and "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.text.lstrip("\ufeff"))))
    assert {r["tracking_code"] for r in rows} == set(codes_of(app, a, c))
    assert {(r["category"], r["category_name"]) for r in rows} == {("haircut", "理发"),
                                                                   ("umbrella_repair", "修雨伞")}
    assert rows[0]["status_name"] == "已提交" and rows[0]["masked_phone"] == "138****1234"
    xlsx = bulk(admin, [b], "export_xlsx")
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"
    nothing = bulk(admin, [], "export_csv")
    assert nothing.status_code == 422 and 'role="alert"' in nothing.text


def test_bulk_take_and_pass_to_the_grid_leader(app):
    a, b, done = submit(app, G1_BUILDING), submit(app, G1_BUILDING), submit(app, G1_BUILDING)
    complete(app, done)
    g1 = signed_in(app, "g1")
    resp = bulk(g1, [a, done], "take", query="?sort=due")
    back = resp.headers["Location"]
    assert resp.status_code == 303 and "sort=due" in back and "done=taken" in back
    assert "n=1" in back and "skipped=1" in back
    notice = g1.get(resp.headers["Location"])
    assert 'role="status"' in notice.text
    with app.app_context():
        assert get_request(app, a).taken_at is not None and get_request(app, b).taken_at is None
    resp = bulk(g1, [a, b, done], "escalate")
    assert resp.status_code == 303
    asked = outbox(app, contract.STAFF_ACTION)
    assert sorted(e["request_id"] for e in asked if e["action"] == "escalate") == sorted([a, b])
    assert all(e["level"] == 2 and e["actor"].startswith("staff:") for e in asked if e["action"] == "escalate")


def test_search_and_bulk_actions_stay_in_scope(app):
    mine = submit(app, G1_BUILDING, contact_phone="13900004321")
    theirs = submit(app, G2_BUILDING, contact_phone="13900004321", room="702")
    g1 = signed_in(app, "g1")
    assert queue_codes(g1.get("/staff/?search=4321").text) == codes_of(app, mine)
    assert queue_codes(g1.get("/staff/", query_string={"search": codes_of(app, theirs)[0]}).text) == []
    assert queue_codes(g1.get("/staff/?search=702").text) == []
    for what in ("export_csv", "take", "escalate"):
        refused = bulk(g1, [mine, theirs], what)
        assert refused.status_code == 403, what
        assert codes_of(app, theirs)[0] not in refused.text
    with app.app_context():
        assert get_request(app, mine).taken_at is None and get_request(app, theirs).taken_at is None
    assert not outbox(app, contract.STAFF_ACTION)
    hall = signed_in(app, "hall")
    other_stairwell = submit(app, G1_BUILDING, unit="2")
    assert bulk(hall, [other_stairwell], "export_csv").status_code == 403
    assert bulk(hall, ["not-a-request-id"], "export_csv").status_code == 400
    # CSRF on the bulk form too.
    assert g1.post("/staff/bulk", data={"ids": [mine], "action": "take"}).status_code == 400


def test_codes_are_shown_as_words_in_chinese_and_english(app, monkeypatch):
    from services.requests.console import volunteers as console_volunteers

    submit(app, G1_BUILDING, category="umbrella_repair")
    monkeypatch.setattr(console_volunteers, "read_all_pages", lambda *a, **k: [
        {"id": 1, "display_name": "王建国", "building": "3", "unit": "1", "skills": ["health_check", "haircut"],
         "phone": "139****1111", "active": True, "active_tasks": 0, "capacity": 2}])
    admin = signed_in(app, "admin")
    zh = admin.get("/staff/").text
    table = zh.split('id="queue"')[1]
    assert "修雨伞" in table and "umbrella_repair" not in table and "已提交" in table and "第1网格" in table
    assert ">G1<" not in table
    vols = admin.get("/staff/volunteers").text
    assert "健康体检、理发" in vols and "health_check" not in vols
    assert "社区管理员" in zh or "Community admin" not in zh  # the role, in words
    admin.get("/staff/?lang=en")
    en = admin.get("/staff/").text.split('id="queue"')[1]
    assert "Umbrella repair" in en and "Submitted" in en and "umbrella_repair" not in en
    assert "Haircut" in admin.get("/staff/volunteers").text


def test_the_navigation_counts_what_waits_for_me(app):
    waiting = submit(app, G1_BUILDING)  # nobody has it
    taken = submit(app, G1_BUILDING)
    late = submit(app, G1_BUILDING)
    cancelled = submit(app, G1_BUILDING)
    submit(app, G2_BUILDING)  # another grid's
    g1 = signed_in(app, "g1")
    for rid in (taken, late):
        action(g1, rid, "take")
    action(g1, cancelled, "cancel", note="重复")
    with app.app_context():
        get_request(app, late).due_at = datetime.now(timezone.utc) - timedelta(hours=1)  # taken, but past due
        app.extensions["db"].Session.commit()
    page = g1.get("/staff/")
    badge = page.text.split('id="waiting-count"')[1].split("</a>")[0]
    assert "2" in badge  # the untaken one and the late one
    listed = g1.get("/staff/?waiting=1")
    assert sorted(queue_codes(listed.text)) == sorted(codes_of(app, waiting, late))
    assert "3" in signed_in(app, "admin").get("/staff/").text.split('id="waiting-count"')[1].split("</a>")[0]


def test_a_request_page_shows_what_to_do_next_first(app):
    rid = submit(app, G1_BUILDING)
    admin = signed_in(app, "admin")
    page = admin.get(f"/staff/requests/{rid}").text
    nxt, timeline = page.index('id="next"'), page.index('id="timeline"')
    assert nxt < timeline
    first = page[nxt:timeline]
    assert "/take" in first and "/extend" in first and "/close" in first
    assert first.index("/take") < first.index('id="more-actions"') < first.index("/cancel")
    with app.app_context():  # past the time to take it
        get_request(app, rid).take_by = datetime.now(timezone.utc) - timedelta(minutes=5)
        app.extensions["db"].Session.commit()
    late = admin.get(f"/staff/requests/{rid}").text
    assert "⚠" in late.split('id="deadline"')[1].split("</strong>")[0]
    assert "超时" in late.split('id="deadline"')[1].split("</strong>")[0] or "Overdue" in late
    action(admin, rid, "take")
    with app.app_context():
        get_request(app, rid).due_at = datetime.now(timezone.utc) + timedelta(hours=3)
        app.extensions["db"].Session.commit()
    soon = admin.get(f"/staff/requests/{rid}").text
    assert "⏰" in soon.split('id="deadline"')[1].split("</strong>")[0]
    assert "/take" not in soon.split('id="next"')[1].split('id="timeline"')[0]
    complete(app, rid)
    done = admin.get(f"/staff/requests/{rid}").text.split('id="next"')[1].split('id="timeline"')[0]
    assert "/close" in done and "/follow-up" in done and "/take" not in done and "/cancel" not in done
