"""The console's phone-call log (来电登记): recording a call with field-level
errors, its scope (a grid leader never sees another grid's calls), the
caller's number masked in lists and never in a URL or a log line, "enter as
request" linking the new request back, the monthly figures on the dashboard
(enquiries that never became a request counted) and the download; the
migration both ways; the office's number in every page's footer."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import func, inspect, select

from services.common.clock import SHANGHAI, SetClock
from services.requests.models import Base, PhoneCall, ServiceRequest
from tests.conftest import csrf_token
from tests.factories import add_staff
from tests.factories import staff_signed_in as signed_in

PHONE, OTHER_PHONE = "13912345678", "13700001111"
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)  # Tuesday 10:00 in Hangzhou


@pytest.fixture
def app(make_app):
    return make_app("requests", setup=add_staff, clock=SetClock(NOW))


def record(client, **form):
    page = client.get("/staff/calls")
    assert page.status_code == 200, page.text
    data = {"caller_phone": PHONE, "caller_name": "王阿姨", "building": "3", "unit": "1", "topic": "haircut",
            "note": "想在家理发", "outcome": "answered", **form}
    return client.post("/staff/calls", data={**data, "csrf_token": csrf_token(page.text)})


def call_id(resp) -> int:
    assert resp.status_code == 303, resp.text
    return int(re.search(r"/staff/calls/(\d+)", resp.headers["Location"]).group(1))


def calls(app) -> list[PhoneCall]:
    with app.app_context():
        rows = app.extensions["db"].Session.scalars(select(PhoneCall).order_by(PhoneCall.id)).all()
        return [(c.id, c.outcome, c.referred_to, c.service_request_id, c.taken_by, c.caller_phone) for c in rows]


def test_a_call_is_recorded_and_listed_with_the_number_masked(app):
    hall = signed_in(app, "hall")
    cid = call_id(record(hall, outcome="referred", referred_to="property", topic="other", note="楼道灯坏了"))
    (row,) = calls(app)
    assert row[1:3] == ("referred", "property") and row[4].startswith("staff:") and row[5] == PHONE
    listing = hall.get("/staff/calls")
    assert "139****5678" in listing.text and PHONE not in listing.text
    assert "物业" in listing.text and "楼道灯坏了" in listing.text  # the referral as a word, not a code
    page = hall.get(f"/staff/calls/{cid}")
    assert page.status_code == 200 and PHONE in page.text  # in full on the call's own page
    assert "2026-11-24 10:00" in page.text  # when: now, shown in Hangzhou time


@pytest.mark.parametrize("form, field", [
    ({"caller_phone": "12345"}, "caller_phone"),
    ({"topic": ""}, "topic"),
    ({"topic": "other", "note": ""}, "note"),
    ({"outcome": "referred", "referred_to": ""}, "referred_to"),
    ({"outcome": "lost"}, "outcome"),
    ({"building": "999"}, "building"),
    ({"unit": "9"}, "unit"),
    ({"called_at": "2026-11-30T10:00"}, "called_at"),  # in the future by the app's clock
])
def test_a_bad_call_is_refused_at_its_field_and_changes_nothing(app, form, field):
    resp = record(signed_in(app, "admin"), **form)
    assert resp.status_code == 422
    assert f'aria-describedby="{field}-error"' in resp.text and f'id="{field}-error"' in resp.text
    assert calls(app) == []


def test_the_call_log_follows_the_scope(app):
    admin, g1, g2, hall = (signed_in(app, name) for name in ("admin", "g1", "g2", "hall"))
    in_g1 = call_id(record(admin, building="3", unit="1"))  # grid G1, the hallway leader's stairwell
    in_g2 = call_id(record(admin, building="14", unit="1", caller_phone=OTHER_PHONE))
    by_hall = call_id(record(hall, building="14", unit="2", caller_phone="13600002222"))  # elsewhere, but theirs
    assert g2.get(f"/staff/calls/{in_g1}").status_code == 403
    assert g1.get(f"/staff/calls/{in_g2}").status_code == 403
    assert hall.get(f"/staff/calls/{in_g2}").status_code == 403
    assert g2.get(f"/staff/calls/{in_g1}/request").status_code == 403
    assert g1.get("/staff/calls/99999").status_code == 404
    assert hall.get(f"/staff/calls/{by_hall}").status_code == 200  # the calls they took
    g1_list = g1.get("/staff/calls").text
    assert f"/staff/calls/{in_g1}\"" in g1_list and f"/staff/calls/{in_g2}\"" not in g1_list
    assert "137****1111" not in g1_list
    g2_list = g2.get("/staff/calls").text
    assert f"/staff/calls/{in_g2}\"" in g2_list and f"/staff/calls/{by_hall}\"" in g2_list
    assert f"/staff/calls/{in_g1}\"" not in g2_list
    rows = list(csv.reader(io.StringIO(g1.get("/staff/calls?format=csv").text.lstrip("\ufeff"))))
    assert len(rows) == 2 and rows[1][3] == "3"  # the download is scoped too
    assert len(admin.get("/staff/calls?format=csv").text.strip().splitlines()) == 4


def test_enter_as_request_fills_the_form_and_links_the_request_back(app):
    hall = signed_in(app, "hall")
    resp = record(hall, outcome="request", note="家里水龙头漏水", topic="appliance_repair")
    cid = call_id(resp)
    assert resp.headers["Location"].endswith(f"/staff/calls/{cid}/request")
    form = hall.get(f"/staff/calls/{cid}/request")
    assert form.status_code == 200
    assert f'value="{PHONE}"' in form.text and "家里水龙头漏水" in form.text and 'value="王阿姨"' in form.text
    assert calls(app)[0][3] is None  # not linked until the request is entered
    data = {"category": "appliance_repair", "description": "家里水龙头漏水", "building": "3", "unit": "1",
            "room": "302", "contact_name": "王阿姨", "contact_phone": PHONE, "mode": "home", "consent": "true",
            "consent_method": "phone", "csrf_token": csrf_token(form.text)}
    bad = hall.post(f"/staff/calls/{cid}/request", data={**data, "room": ""})
    assert bad.status_code == 422 and 'aria-describedby="room-error"' in bad.text and calls(app)[0][3] is None
    done = hall.post(f"/staff/calls/{cid}/request", data=data)
    assert done.status_code == 303 and done.headers["Location"].endswith(f"/staff/calls/{cid}?done=linked")
    (row,) = calls(app)
    with app.app_context():
        req = app.extensions["db"].Session.get(ServiceRequest, row[3])
        assert req.channel == "staff" and req.contact_phone == PHONE and req.entered_by == row[4]
        assert app.extensions["db"].Session.scalar(select(func.count()).select_from(ServiceRequest)) == 1
    page = hall.get(f"/staff/calls/{cid}")
    assert f"/staff/requests/{row[3]}" in page.text and 'id="enter-request"' not in page.text
    again = hall.post(f"/staff/calls/{cid}/request", data=data)  # a second post enters nothing more
    assert again.status_code == 303
    with app.app_context():
        assert app.extensions["db"].Session.scalar(select(func.count()).select_from(ServiceRequest)) == 1


def test_the_number_is_never_in_a_url_or_a_log_line(app, caplog):
    caplog.set_level("INFO")
    admin = signed_in(app, "admin")
    urls = []
    for outcome in ("request", "answered"):
        resp = record(admin, outcome=outcome)
        urls.append(resp.headers["Location"])
    cid = call_id(resp)
    page = admin.get("/staff/calls")
    urls += re.findall(r'href="([^"]+)"', page.text) + re.findall(r'action="([^"]+)"', page.text)
    urls += re.findall(r'href="([^"]+)"', admin.get(f"/staff/calls/{cid}").text)
    assert urls and not [u for u in urls if PHONE in u and not u.startswith("tel:")]
    assert caplog.records
    for r in caplog.records:
        line = json.dumps({**r.__dict__, "msg": r.getMessage()}, default=str, ensure_ascii=False)
        assert PHONE not in line and "王阿姨" not in line
    assert any(r.getMessage() == "phone call recorded" for r in caplog.records)


def test_the_dashboard_counts_calls_per_outcome_and_enquiries_without_a_request(app):
    admin = signed_in(app, "admin")
    october = (NOW - timedelta(days=30)).astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M")
    record(admin, outcome="answered")
    record(admin, outcome="referred", referred_to="12345")
    record(admin, outcome="referred", referred_to="police", called_at=october)
    record(admin, outcome="request")  # marked, but the request was never entered: still an enquiry
    cid = call_id(record(admin, outcome="request"))
    with app.app_context():
        s = app.extensions["db"].Session
        call = s.get(PhoneCall, cid)
        req = ServiceRequest(category="haircut", description="理发", building_code="3", room="302",
                             contact_name="王阿姨", contact_phone=PHONE, consent_at=NOW, channel="staff")
        s.add(req)
        s.flush()
        call.service_request_id = req.id
        s.commit()
    rows = list(csv.reader(io.StringIO(admin.get("/staff/dashboard?export=calls_by_month").text.lstrip("\ufeff"))))
    assert rows[0] == ["month", "calls", "became_request", "answered", "referred", "no_request"]
    assert rows[1:] == [["2026-10", "1", "0", "0", "1", "1"], ["2026-11", "4", "1", "1", "1", "3"]]
    page = admin.get("/staff/dashboard")
    assert 'id="calls_by_month"' in page.text and "未形成请求的咨询" in page.text
    g2 = signed_in(app, "g2")  # the calls were in grid G1
    g2_rows = list(csv.reader(io.StringIO(g2.get("/staff/dashboard?export=calls_by_month").text.lstrip("\ufeff"))))
    assert g2_rows[1:] == []


def test_the_call_log_downloads_as_csv_and_excel_with_the_number_masked(app):
    admin = signed_in(app, "admin")
    record(admin, outcome="referred", referred_to="12345", note="=HYPERLINK(1)", topic="other")
    rows = list(csv.reader(io.StringIO(admin.get("/staff/calls?format=csv").text.lstrip("\ufeff"))))
    assert rows[0][:3] == ["called_at", "caller_phone_masked", "caller_name"]
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["caller_phone_masked"] == "139****5678" and row["called_at"] == "2026-11-24 10:00"
    assert (row["outcome"], row["referred_to"], row["referred_to_name"]) == ("referred", "12345", "12345热线")
    assert row["note"] == "'=HYPERLINK(1)"  # never a formula
    assert PHONE not in admin.get("/staff/calls?format=csv").text
    xlsx = admin.get("/staff/calls?format=xlsx")
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"
    assert admin.get("/staff/calls?format=pdf").status_code == 404


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_phone_call_migration_runs_both_ways(make_app, backend):
    from services import requests as module

    app = make_app("requests", backend=backend, clock=SetClock(NOW))
    db = app.extensions["db"]
    with app.app_context():
        assert "phone_call" in inspect(db.engine).get_table_names()
        s = db.Session
        s.add(PhoneCall(called_at=NOW, caller_phone=PHONE, topic="other", note="问路", outcome="answered",
                        taken_by="staff:1"))
        s.commit()
        assert s.scalar(select(func.count()).select_from(PhoneCall)) == 1
        s.remove()
        cfg = db.alembic_config(module.VERSIONS, Base.metadata)
        command.downgrade(cfg, "r0004programme")
        assert "phone_call" not in inspect(db.engine).get_table_names()
        command.upgrade(cfg, "head")
        assert "phone_call" in inspect(db.engine).get_table_names()


def test_every_page_footer_gives_the_office_number(app, make_app):
    number = "057188880000"
    for page in (app.test_client().get("/"), app.test_client().get("/track/NOSUCHCODE00"),
                 signed_in(app, "admin").get("/staff/calls")):
        assert f'href="tel:{number}"' in page.text and "请致电社区办公室" in page.text
    for service in ("volunteers", "notify"):
        other = make_app(service)
        assert f'href="tel:{number}"' in other.test_client().get("/", follow_redirects=True).text


def test_retention_removes_the_callers_number_and_name_and_keeps_the_figures(app):
    from services.requests.tasks import retention

    admin = signed_in(app, "admin")
    old = call_id(record(admin, called_at="2026-03-01T09:00"))
    new = call_id(record(admin))
    with app.app_context():
        retention.run()
        s = app.extensions["db"].Session
        gone, kept = s.get(PhoneCall, old), s.get(PhoneCall, new)
        assert (gone.caller_phone, gone.caller_name) == ("", "") and gone.anonymised_at is not None
        assert kept.caller_phone == PHONE and kept.outcome == "answered"
    assert "保存期满后已删除" in admin.get(f"/staff/calls/{old}").text


def test_the_caller_is_looked_up_in_the_register_by_the_numbers_digest(app, make_app, monkeypatch):
    """The call's page says who the number belongs to in the register (the
    community service's lookup, by the keyed digest: the number never
    travels), within the member's area."""
    from services.common import contract
    from services.community.models import Resident
    from tests.factories import service_reads
    from tests.test_community_visits import add_resident

    community = make_app("community")
    service_reads(monkeypatch, app, community=community)
    rid = add_resident(community, building="3", unit="1", room="302", name="王秀英", phone=PHONE)
    with community.app_context():
        s = community.extensions["db"].Session
        s.get(Resident, rid).phone_digest = contract.phone_digest(PHONE, app.config["PHONE_DIGEST_KEY"])
        s.commit()
    office = signed_in(app, "admin")
    known = call_id(record(office))
    unknown = call_id(record(office, caller_phone=OTHER_PHONE))
    page = office.get(f"/staff/calls/{known}").text
    assert "王秀英" in re.search(r'id="caller-registered">(.*?)</dd>', page).group(1)
    assert "302" in re.search(r'id="caller-registered">(.*?)</dd>', page).group(1)
    assert "王秀英" not in office.get(f"/staff/calls/{unknown}").text
