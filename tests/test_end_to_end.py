"""The whole flow over real HTTP, with real processes (three gunicorn web
services, three Celery workers, beat) on the real Redis, a real webhook
receiver and a real SMTP server — once on SQLite, once on PostgreSQL.

A resident submits the web form; the volunteer's webhook receives the
offer; the volunteer follows the link, sees the masked contact, accepts,
sees the full contact; the resident's tracking page says assigned. A
staff-only request goes to the grid leader by email instead."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
import redis
import requests

from services.common.clock import SHANGHAI
from services.common.community import load as load_community
from services.common.settings import base_config
from tests.conftest import csrf_token
from tests.factories import resident_form
from tests.receivers import SmtpReceiver, WebhookReceiver, wait_for
from tests.system import ROOT, System, extract

pytestmark = pytest.mark.integration

# Its own Redis database: nothing else feeds or drains these queues.
IT_REDIS_URL = "redis://127.0.0.1:6379/14"

# A room number no other page carries, so that finding it means the contact was shown.
RESIDENT = resident_form(room="1502")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def system(request, tmp_path_factory):
    redis.Redis.from_url(IT_REDIS_URL).flushdb()
    community = json.loads(json.dumps(load_community(base_config("requests")["COMMUNITY_FILE"])))
    with WebhookReceiver() as hook, SmtpReceiver() as smtp:
        grid1 = next(g for g in community["grids"] if g["code"] == "G1")
        grid1["leader"]["channels"] = [smtp.url("grid1@example.org")]
        building7 = next(b for b in community["buildings"] if b["code"] == "7")
        building7["hallway_leaders"]["2"]["channels"] = [hook.url("/hallway-7-2")]
        # Bicycle offers expire after 6 s here, so that expiry can be watched.
        env = {"LINLI_DISPATCH_POLICIES": json.dumps({"bicycle_repair": {"offer_minutes": 0.1}}),
               # A delivery whose worker died is tried again after 10 s instead of 90 s.
               "LINLI_DELIVERY_LEASE_SECONDS": "10"}
        sys_ = System(tmp_path_factory.mktemp(f"linli-{request.param}"), request.param, IT_REDIS_URL, community, env)
        sys_.hook, sys_.smtp = hook, smtp
        try:
            yield sys_.start()
        finally:
            sys_.stop()


def test_form_to_volunteer_and_back(system):
    urls = system.urls
    # Staff register a volunteer whose channel is our webhook receiver.
    resp = requests.post(f"{urls['volunteers']}/api/v1/volunteers", headers=system.admin(), timeout=5, json={
        "name": "王建国", "phone": "13900001111", "building": "3", "unit": "2", "skills": ["haircut"],
        "capacity": 2, "channels": [system.hook.url("/wang")]})
    assert resp.status_code == 201, resp.text
    volunteer_id = resp.json()["id"]

    # The resident fills in the web form (with its CSRF token) and lands on the tracking page.
    resident = requests.Session()
    form = resident.get(f"{urls['requests']}/", timeout=5)
    assert "我要求助" in form.text and "理发" in form.text
    answer = resident.post(f"{urls['requests']}/", data={**RESIDENT, "csrf_token": csrf_token(form.text)}, timeout=10)
    assert answer.status_code == 200 and "/track/" in answer.url
    code = extract(r"/track/([A-Z0-9]{12})", answer.url)
    assert "13812341234" not in answer.url

    # The offer reaches the volunteer's webhook, with a link and a masked phone.
    offer = wait_for(lambda: next((r for r in system.hook.received if r["path"] == "/wang"), None),
                     timeout=30, what="the offer at the volunteer's webhook")["body"]
    assert "138****1234" in offer["message"] and "13812341234" not in offer["message"]
    link = extract(r"(http://127\.0\.0\.1:\d+/offers/[\w-]+)", offer["message"])
    assert system.wait_status(code, "offered")["status"] == "offered"

    volunteer = requests.Session()
    page = volunteer.get(link, timeout=5)
    assert page.status_code == 200
    assert "138****1234" in page.text and "3幢" in page.text
    assert "13812341234" not in page.text and "1502" not in page.text and "张桂兰" not in page.text

    accepted = volunteer.post(link, data={"decision": "accept", "csrf_token": csrf_token(page.text)}, timeout=10)
    assert accepted.status_code == 200
    assert "13812341234" in accepted.text and "1502" in accepted.text and "张桂兰" in accepted.text

    tracked = system.wait_status(code, "assigned")
    assert tracked["volunteer_name"] == "王建国"
    assert [h["status"] for h in tracked["history"]] == ["submitted", "offered", "assigned"]
    page = resident.get(f"{urls['requests']}/track/{code}", timeout=5).text
    assert "已接单" in page and "王建国" in page
    # The resident's in-app message arrives (shown on the tracking page).
    wait_for(lambda: "王建国接单" in resident.get(f"{urls['requests']}/track/{code}", timeout=5).text,
             timeout=30, what="the resident's in-app message")

    deliveries = requests.get(f"{urls['notify']}/api/v1/deliveries", params={"recipient": f"volunteer:{volunteer_id}"},
                              headers=system.admin(), timeout=5).json()
    assert [(d["status"], d["attempts"]) for d in deliveries] == [("sent", 1)]
    assert system.hook.url("/wang") not in json.dumps(deliveries)


def test_staff_only_request_is_escalated_to_the_grid_leader(system):
    resp = requests.post(f"{system.urls['requests']}/api/v1/requests", timeout=10, json={
        **RESIDENT, "consent": True, "category": "parking", "building": "5", "unit": "1",
        "description": "孝心车位被占用了"})
    assert resp.status_code == 201, resp.text
    code = resp.json()["tracking_code"]
    mail = wait_for(lambda: next((m for m in system.smtp.messages if "孝心车位" in m.get_body().get_content()), None),
                    timeout=30, what="the escalation email to the grid leader")
    assert mail["To"] == "grid1@example.org"
    assert "13812341234" not in mail.get_body().get_content()
    tracked = system.wait_status(code, "escalated")
    assert tracked["history"][-1]["note"] == "staff_only"
    page = requests.get(f"{system.urls['requests']}/track/{code}", timeout=5).text
    assert "已转社区工作人员处理" in page


def offers_at(system, path):
    return [r["body"]["message"] for r in system.hook.received if r["path"] == path]


def test_sequential_dispatch_decline_then_expiry_reaches_the_third_volunteer(system):
    urls = system.urls
    for path, building, unit in (("/bike-1", "8", "1"), ("/bike-2", "8", "2"), ("/bike-3", "9", "1")):
        resp = requests.post(f"{urls['volunteers']}/api/v1/volunteers", headers=system.admin(), timeout=5, json={
            "name": f"车师傅{path[-1]}", "phone": f"1370000000{path[-1]}",
            "building": building, "unit": unit, "skills": ["bicycle_repair"], "channels": [system.hook.url(path)]})
        assert resp.status_code == 201, resp.text
    resp = requests.post(f"{urls['requests']}/api/v1/requests", timeout=10, json={
        **RESIDENT, "consent": True, "category": "bicycle_repair", "building": "8", "unit": "1",
        "description": "车胎没气了"})
    code = resp.json()["tracking_code"]
    first = wait_for(lambda: offers_at(system, "/bike-1"), timeout=30, what="the first offer")[0]
    link = extract(r"(http://127\.0\.0\.1:\d+/offers/[\w-]+)", first)
    volunteer = requests.Session()
    page = volunteer.get(link, timeout=5).text
    declined = volunteer.post(link, timeout=10, data={"decision": "decline", "reason": "今天不在家",
                                                      "csrf_token": csrf_token(page)})
    assert declined.status_code == 200
    wait_for(lambda: offers_at(system, "/bike-2"), timeout=30, what="the second offer")
    # Nobody answers the second: beat's sweep expires it and asks the third.
    wait_for(lambda: offers_at(system, "/bike-3"), timeout=40, what="the third offer after expiry")
    assert len(offers_at(system, "/bike-1")) == 1 and len(offers_at(system, "/bike-2")) == 1
    assert system.tracking(code)["status"] == "offered"


def test_no_candidate_escalates_to_the_hallway_leaders_channel(system):
    resp = requests.post(f"{system.urls['requests']}/api/v1/requests", timeout=10, json={
        **RESIDENT, "consent": True, "category": "umbrella_repair", "building": "7", "unit": "2",
        "description": "伞骨断了"})
    code = resp.json()["tracking_code"]
    message = wait_for(lambda: offers_at(system, "/hallway-7-2"), timeout=30, what="the hallway leader's message")[0]
    assert "修雨伞" in message and "138****1234" in message and "13812341234" not in message
    assert system.wait_status(code, "escalated")["history"][-1]["note"] == "no_candidate"


def test_station_booking_fills_slots_in_order_and_overflows(system):
    urls, staff = system.urls, system.admin()
    barber = requests.post(f"{urls['volunteers']}/api/v1/volunteers", headers=staff, timeout=5, json={
        "name": "理发张师傅", "phone": "13900003333", "building": "1", "skills": ["alterations"]}).json()["id"]
    station = requests.post(f"{urls['volunteers']}/api/v1/stations", headers=staff, timeout=5, json={
        "code": "cuilinli", "name": "翠邻里服务站", "place": "1幢一楼"}).json()["id"]
    tomorrow = (datetime.now(SHANGHAI) + timedelta(days=1)).weekday()
    resp = requests.post(f"{urls['volunteers']}/api/v1/stations/{station}/sessions", headers=staff, timeout=5,
                         json={"category": "alterations", "weekday": tomorrow, "start": "09:00", "end": "11:00",
                               "volunteer_id": barber, "slots": 2})
    assert resp.status_code == 201, resp.text
    codes = []
    for i in range(3):
        resp = requests.post(f"{urls['requests']}/api/v1/requests", timeout=10, json={
            **RESIDENT, "consent": True, "category": "alterations", "mode": "station", "description": f"裤脚改短{i}"})
        codes.append(resp.json()["tracking_code"])
    booked = [system.wait_status(code, "assigned") for code in codes]
    days = sorted(datetime.fromisoformat(b["appointment_at"]).astimezone(SHANGHAI).date() for b in booked)
    assert days[0] == days[1] and days[2] == days[0] + timedelta(days=7)
    assert all(b["place"] == "翠邻里服务站（1幢一楼）" and b["volunteer_name"] == "理发张师傅" for b in booked)
    page = requests.get(f"{urls['requests']}/track/{codes[0]}", timeout=5).text
    assert "翠邻里服务站" in page


def test_one_offer_delivery_even_when_the_notify_worker_is_killed_mid_delivery(system):
    urls = system.urls
    system.hook.routes["/slow"] = (200, {"ok": True}, 2.5)  # slow, yet within the sender's 4 s time-out
    resp = requests.post(f"{urls['volunteers']}/api/v1/volunteers", headers=system.admin(), timeout=5, json={
        "name": "磨刀刘师傅", "phone": "13700000009", "building": "20", "unit": "1", "skills": ["sharpening"],
        "channels": [system.hook.url("/slow")]})
    volunteer_id = resp.json()["id"]
    form = requests.Session()
    page = form.get(f"{urls['requests']}/", timeout=5).text
    form.post(f"{urls['requests']}/", timeout=10, data={**RESIDENT, "category": "sharpening", "building": "20",
                                                       "description": "菜刀钝了", "csrf_token": csrf_token(page)})
    wait_for(lambda: offers_at(system, "/slow"), timeout=30, what="the offer reaching the slow webhook")
    system.kill("notify-worker")  # mid-delivery: the webhook has it, the worker never hears back
    system.restart("notify-worker")

    def delivered():
        rows = requests.get(f"{urls['notify']}/api/v1/deliveries", params={"recipient": f"volunteer:{volunteer_id}"},
                            headers=system.admin(), timeout=5).json()
        return rows if rows and rows[0]["status"] == "sent" else None

    rows = wait_for(delivered, timeout=60, what="the delivery to be recorded as sent after the restart")
    assert len(rows) == 1  # one Delivery for the one candidate, not one per handout
    posts = [r for r in system.hook.received if r["path"] == "/slow"]
    keys = {r["headers"]["X-Linli-Dedupe-Key"] for r in posts}
    assert keys == {rows[0]["dedupe_key"]}  # the receiver can tell any repeat for what it is
    assert 1 <= len(posts) <= 2


PROXY_RESIDENT = {**RESIDENT, "unit": "2", "room": "A-907", "contact_name": "李秀英", "contact_phone": "13755556666",
                  "description": "电话里说剪刀钝了，想请人上门", "consent_method": "phone"}


def test_staff_console_proxy_intake_and_reassign(system):
    """A grid leader signs in, enters a request for a resident who phoned,
    sees matching's offers (read over HTTP), reassigns it to another
    volunteer (a task to matching), and the timeline shows the outcome."""
    urls = system.urls
    made = subprocess.run([sys.executable, "-m", "flask", "--app", "services.requests", "create-staff",
                           "--username", "grid1", "--role", "grid_leader", "--grid", "G1", "--name", "一网格网格长"],
                          env={**system.env, "LINLI_STAFF_PASSWORD": "grid-one-password"}, cwd=ROOT,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    resp = requests.post(f"{urls['volunteers']}/api/v1/volunteers", headers=system.admin(), timeout=5, json={
        "name": "陈美华", "phone": "13900002222", "building": "4", "unit": "1", "skills": ["haircut"],
        "capacity": 1, "channels": [system.hook.url("/chen")]})
    assert resp.status_code == 201, resp.text
    chen = resp.json()["id"]

    staff = requests.Session()
    login = staff.get(f"{urls['requests']}/staff/login", timeout=5)
    signed = staff.post(f"{urls['requests']}/staff/login", timeout=10, data={
        "username": "grid1", "password": "grid-one-password", "csrf_token": csrf_token(login.text)})
    assert signed.status_code == 200 and signed.url.endswith("/staff/")
    form = staff.get(f"{urls['requests']}/staff/new", timeout=5)
    entered = staff.post(f"{urls['requests']}/staff/new", timeout=10,
                         data={**PROXY_RESIDENT, "csrf_token": csrf_token(form.text)})
    assert entered.status_code == 200 and "/staff/requests/" in entered.url
    request_id = extract(r"/staff/requests/([0-9a-f-]{36})", entered.url)
    code = extract(r'class="code">([A-Z0-9]{12})<', entered.text)
    assert "13755556666" not in entered.text and "138****" not in entered.text
    system.wait_status(code, "offered")
    page = wait_for(lambda: (lambda t: t if "#" in t.split('id="offers"')[1].split("</ul>")[0] else None)(
        staff.get(f"{urls['requests']}/staff/requests/{request_id}", timeout=5).text), timeout=15,
        what="matching's offer shown in the console")
    assert f'<option value="{chen}">' in page  # candidates read from matching's API
    moved = staff.post(f"{urls['requests']}/staff/requests/{request_id}/reassign", timeout=10,
                       data={"volunteer_id": str(chen), "csrf_token": csrf_token(page)})
    assert moved.status_code == 200 and "done=reassign" in moved.url
    tracked = system.wait_status(code, "assigned")
    assert tracked["volunteer_name"] == "陈美华"
    shown = staff.post(f"{urls['requests']}/staff/requests/{request_id}/contact", timeout=10,
                       data={"csrf_token": csrf_token(moved.text)})
    assert "13755556666" in shown.text and "A-907" in shown.text
    log = staff.get(f"{urls['requests']}/staff/access-log", timeout=5).text
    assert code in log and "一网格网格长" in log

    # The office changes a volunteer's capacity and services; matching's worker applies it.
    form = staff.get(f"{urls['requests']}/staff/volunteers/{chen}", timeout=5)
    assert form.status_code == 200 and "陈美华" in form.text
    bad = staff.post(f"{urls['requests']}/staff/volunteers/{chen}", timeout=10,
                     data={"capacity": "11", "csrf_token": csrf_token(form.text)})
    assert bad.status_code == 422 and 'id="capacity-error"' in bad.text and 'id="skills-error"' in bad.text
    saved = staff.post(f"{urls['requests']}/staff/volunteers/{chen}", timeout=10, data=[
        ("name", "陈美华"), ("building", "4"), ("unit", "1"), ("active", "1"), ("capacity", "3"),
        ("skills", "haircut"), ("skills", "sharpening"), ("csrf_token", csrf_token(form.text))])
    assert saved.status_code == 200 and "/staff/volunteers/changes/" in saved.url
    wait_for(lambda: (lambda v: v["capacity"] == 3 and sorted(v["skills"]) == ["haircut", "sharpening"])(
        requests.get(f"{urls['volunteers']}/api/v1/volunteers/{chen}", headers=system.admin(), timeout=5).json()),
        timeout=20, what="the volunteer's new capacity and services")
    # Outside the grid leader's area: refused.
    far = requests.post(f"{urls['volunteers']}/api/v1/volunteers", headers=system.admin(), timeout=5, json={
        "name": "远方", "phone": "13900002333", "building": "60", "unit": "1", "skills": ["haircut"]}).json()["id"]
    assert staff.get(f"{urls['requests']}/staff/volunteers/{far}", timeout=5).status_code == 403


def _add_resident(system, name: str, phone: str) -> int:
    """A resident in the community service's register, as its import leaves them (test setup)."""
    from sqlalchemy import create_engine, text

    url = system.env.get("LINLI_COMMUNITY_DATABASE_URL") or f"sqlite:///{system.env['LINLI_DATA_DIR']}/community.db"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            now = datetime.now().astimezone().replace(tzinfo=None)
            home = conn.execute(text(
                "INSERT INTO household (grid, building, unit, floor, room, tenure, demo, created_at, updated_at) "
                "VALUES ('G1', '3', '1', 6, '602', 'owner', false, :t, :t) RETURNING id"), {"t": now}).scalar()
            return conn.execute(text(
                "INSERT INTO resident (household_id, name, sex, birth_year, relation, phone, lives_alone, "
                "party_member, reach_by, consent_contact, created_at, updated_at) VALUES "
                "(:h, :n, 'female', 1940, 'head', :p, true, false, 'call', true, :t, :t) RETURNING id"),
                {"h": home, "n": name, "p": phone, "t": now}).scalar()
    finally:
        engine.dispose()


def test_a_visit_plan_reaches_a_volunteer_and_what_they_found_reaches_the_grid_leader(system):
    """Through all four services: the office sets a visit plan in the
    console; the community service's timer makes the visit a request;
    matching offers it to the visiting volunteer; they accept and, on
    completing, say the resident needs attention; that becomes a welfare
    request that reaches the grid leader by email; the console shows it."""
    urls = system.urls
    made = subprocess.run([sys.executable, "-m", "flask", "--app", "services.requests", "create-staff",
                           "--username", "office1", "--role", "admin", "--name", "社区办公室"],
                          env={**system.env, "LINLI_STAFF_PASSWORD": "office-one-password"}, cwd=ROOT,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    resp = requests.post(f"{urls['volunteers']}/api/v1/volunteers", headers=system.admin(), timeout=5, json={
        "name": "周志强", "phone": "13900007373", "building": "3", "unit": "1", "skills": ["visit"],
        "capacity": 2, "channels": [system.hook.url("/zhou")]})
    assert resp.status_code == 201, resp.text
    resident_id = _add_resident(system, "钱桂英", "13811112222")

    staff = requests.Session()
    login = staff.get(f"{urls['requests']}/staff/login", timeout=5)
    staff.post(f"{urls['requests']}/staff/login", timeout=10, data={
        "username": "office1", "password": "office-one-password", "csrf_token": csrf_token(login.text)})
    form = staff.get(f"{urls['requests']}/staff/visits/plan/{resident_id}", timeout=5)
    assert form.status_code == 200 and "周志强" in form.text  # paired volunteers read from matching
    saved = staff.post(f"{urls['requests']}/staff/visits/plan/{resident_id}", timeout=10, data={
        "rhythm": "weekly", "visitor": "any_volunteer", "active": "true", "csrf_token": csrf_token(form.text)})
    assert saved.status_code == 200 and 'id="plan-state"' in saved.text

    # The visit reaches the volunteer like any offer: no name, no room, no phone before accepting.
    offer = wait_for(lambda: next((r for r in system.hook.received if r["path"] == "/zhou"), None),
                     timeout=40, what="the visit's offer at the volunteer's webhook")["body"]
    assert "钱桂英" not in offer["message"] and "13811112222" not in offer["message"]
    link = extract(r"(http://127\.0\.0\.1:\d+/offers/[\w-]+)", offer["message"])
    volunteer = requests.Session()
    page = volunteer.get(link, timeout=5)
    assert "探访" in page.text and "602" not in page.text
    accepted = volunteer.post(link, data={"decision": "accept", "csrf_token": csrf_token(page.text)}, timeout=10)
    assert accepted.status_code == 200 and "钱桂英" in accepted.text and "602" in accepted.text

    portal = wait_for(lambda: (lambda t: t if 'name="outcome"' in t else None)(
        volunteer.get(f"{urls['volunteers']}/me", timeout=5).text), timeout=15, what="the visit in the portal")
    task_id = extract(r'action="/me/tasks/(\d+)/complete"', portal)
    done = volunteer.post(f"{urls['volunteers']}/me/tasks/{task_id}/complete", timeout=10, data={
        "outcome": "needs_attention", "note": "老人说腿疼，想要助浴", "csrf_token": csrf_token(portal)})
    assert done.status_code == 200

    # What the visitor found is now the grid leader's, by email.
    mail = wait_for(lambda: next((m for m in system.smtp.messages
                                  if "探访发现居民需要帮助" in m.get_body().get_content()), None),
                    timeout=40, what="the welfare request's email to the grid leader")
    assert mail["To"] == "grid1@example.org" and "13811112222" not in mail.get_body().get_content()
    visits = staff.get(f"{urls['requests']}/staff/visits", timeout=5).text
    assert "钱桂英" in visits and "需要关注" in visits


def test_no_personal_data_in_any_log(system):
    logs = system.all_logs()
    assert "offer made" in logs  # the logs are there to be read
    for secret in ("13812341234", "13900001111", "张桂兰", system.hook.url("/wang"), "13755556666", "李秀英",
                   "A-907", "13900002222",
                   "想请师傅上门理发"):  # a resident's own words travel in events, never in logs
        assert secret not in logs, f"{secret} found in the logs"
    assert not re.search(r"Traceback", logs), "a process logged a traceback"
