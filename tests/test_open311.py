"""Open311 GeoReport v2: read with a client from PyPI (georeport) in JSON
and XML over real HTTP, plus our own checks of posting, tokens, errors,
filters and privacy against the specification's field lists."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from xml.etree import ElementTree as ET

import pytest
import requests
import xmltodict
from georeport import GeoReport
from sqlalchemy import func, select
from werkzeug.serving import make_server

from services.common import contract
from services.requests import open311
from services.requests.models import OutboxMessage, ServiceRequest
from tests.conftest import ADMIN_TOKEN
from tests.receivers import POLL

KEY = "partner-key-1"
REQUEST_FIELDS = {"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "media_url"}
SERVICE_FIELDS = {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}


@pytest.fixture
def server(make_app, backend):
    app = make_app("requests", backend=backend, OPEN311_API_KEYS=f"{KEY}, other-key")
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(POLL,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_port}/open311/v2"
    yield app, base
    httpd.shutdown()


def post(base, fmt="json", **fields):
    data = {"api_key": KEY, "service_code": "haircut", "address_id": "3-1-302", "first_name": "桂兰",
            "last_name": "张", "phone": "13812341234", "email": "zhang@example.org",
            "description": "腿脚不便，请上门理发 13812341234", **fields}
    return requests.post(f"{base}/requests.{fmt}", data={k: v for k, v in data.items() if v is not None}, timeout=5)


def test_a_client_from_pypi_reads_services_in_json_and_xml(server):
    _, base = server
    for fmt in ("json", "xml"):
        client = GeoReport(base, output_format=fmt)
        services = client.get_service_list()
        assert {s["service_code"] for s in services} == {c.code for c in contract.RESIDENT_CATEGORIES}
        assert all(SERVICE_FIELDS <= set(s) for s in services)
        definition = client.get_service_definition("haircut")
        assert definition["service_code"] == "haircut"
        attrs = definition["attributes"]
        codes = [a["code"] for a in attrs] if fmt == "json" else [a["code"] for a in attrs["attribute"]]
        assert {"room", "mode", "window_start", "window_end", "urgency"} <= set(codes)


def test_post_then_read_back_with_the_client_in_both_formats(server):
    app, base = server
    resp = post(base)
    assert resp.status_code == 200, resp.text
    [created] = resp.json()
    request_id = created["service_request_id"]
    assert created["token"] == request_id
    with app.app_context():
        session = app.extensions["db"].Session
        req = session.scalar(select(ServiceRequest).where(ServiceRequest.public_id == request_id))
        assert (req.channel, req.building_code, req.unit, req.room, req.contact_name) == ("open311", "3", "1", "302",
                                                                                           "张桂兰")
        # The same intake path: the event is in the outbox.
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    for fmt in ("json", "xml"):
        client = GeoReport(base, output_format=fmt)
        one = client.get_service_request(request_id)
        assert REQUEST_FIELDS <= set(one)
        assert one["service_request_id"] == request_id and one["status"] == "open"
        listed = client.get_service_requests(service_code="haircut")
        listed = listed if isinstance(listed, list) else [listed]
        assert request_id in {r["service_request_id"] for r in listed}
    raw = requests.get(f"{base}/requests.json", timeout=5).text + requests.get(f"{base}/requests.xml", timeout=5).text
    for secret in ("13812341234", "张桂兰", "桂兰", "zhang@example.org", "302", req.tracking_code, req.id, "腿脚不便"):
        assert secret not in raw, secret
    xml_post = post(base, fmt="xml")
    root = ET.fromstring(xml_post.content)
    assert root.tag == "service_requests" and root.find("request/service_request_id").text


def test_tokens_and_updates_with_fixmystreet_statuses(server):
    app, base = server
    request_id = post(base).json()[0]["service_request_id"]
    token = requests.get(f"{base}/tokens/{request_id}.json", timeout=5).json()
    assert token == [{"service_request_id": request_id, "token": request_id}]
    since = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    updates = requests.get(f"{base}/servicerequestupdates.json", params={"start_date": since}, timeout=5).json()
    assert [(u["service_request_id"], u["status"], u["linli_status"]) for u in updates] == [
        (request_id, "open", "submitted")]
    xml = ET.fromstring(requests.get(f"{base}/servicerequestupdates.xml", params={"start_date": since},
                                     timeout=5).content)
    assert xml.tag == "service_request_updates" and xml.find("request_update/status").text == "open"


def test_filters_status_dates_and_ids(server):
    _, base = server
    first = post(base).json()[0]["service_request_id"]
    second = post(base, service_code="alterations", description="改裤脚").json()[0]["service_request_id"]
    ids = requests.get(f"{base}/requests.json", params={"service_request_id": f"{first},{second}"}, timeout=5).json()
    assert {r["service_request_id"] for r in ids} == {first, second}
    altered = requests.get(f"{base}/requests.json", params={"service_code": "alterations"}, timeout=5).json()
    assert [r["service_request_id"] for r in altered] == [second]
    assert requests.get(f"{base}/requests.json", params={"status": "closed"}, timeout=5).json() == []
    assert len(requests.get(f"{base}/requests.json", params={"status": "open"}, timeout=5).json()) == 2
    old = requests.get(f"{base}/requests.json", params={"start_date": "2020-01-01T00:00:00Z",
                                                        "end_date": "2020-02-01T00:00:00Z"}, timeout=5).json()
    assert old == []


@pytest.mark.parametrize("path, params, status", [
    ("/services/teleport.json", {}, 404),
    ("/requests/00000000-0000-0000-0000-000000000000.json", {}, 404),
    ("/tokens/nope.xml", {}, 404),
    ("/requests/LL-%00.json", {}, 404),
    ("/requests.json", {"service_request_id": "LL-\u0000"}, 400),
    ("/requests.json", {"service_code": "x" * 1001}, 400),
    ("/requests.json", {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}, 400),
    ("/requests.json", {"start_date": "yesterday"}, 400),
    ("/requests.json", {"status": "pending"}, 400),
    ("/servicerequestupdates.json", {}, 400),
])
def test_errors_in_the_specs_format(server, path, params, status):
    _, base = server
    resp = requests.get(f"{base}{path}", params=params, timeout=5)
    assert resp.status_code == status
    if path.endswith(".xml"):
        root = ET.fromstring(resp.content)
        assert root.tag == "errors" and root.find("error/code").text == str(status)
    else:
        [error] = resp.json()
        assert error["code"] == status and error["description"]


@pytest.mark.parametrize("fields, status, says", [
    ({"api_key": None}, 403, "api_key"),
    ({"api_key": "wrong"}, 403, "api_key"),
    ({"service_code": None}, 400, "service_code"),
    ({"service_code": "teleport"}, 400, "category"),
    ({"address_id": None}, 400, "location"),
    ({"address_id": None, "lat": "30.28", "long": "120.13"}, 400, "lat/long"),
    ({"address_id": "999-1-101"}, 400, "building"),
    ({"phone": "12345"}, 400, "contact_phone"),
    ({"description": "x" * 4001}, 400, "4000"),
    ({"description": "x" * 1001}, 400, "description"),
])
def test_bad_posts_are_refused_and_change_nothing(server, fields, status, says):
    app, base = server
    resp = post(base, **fields)
    assert resp.status_code == status
    assert says in resp.json()[0]["description"]
    with app.app_context():
        assert app.extensions["db"].Session.scalar(select(func.count()).select_from(ServiceRequest)) == 0


def test_address_string_and_staff_issued_keys(server):
    app, base = server
    client = app.test_client()
    issued = client.post("/api/v1/open311/keys", json={"name": "12345 热线"},
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert issued.status_code == 201
    key = issued.json["api_key"]
    resp = post(base, api_key=key, address_id=None, address_string="翠苑一区5幢2单元101室")
    assert resp.status_code == 200
    [row] = requests.get(f"{base}/requests/{resp.json()[0]['service_request_id']}.json", timeout=5).json()
    assert row["address_id"] == "5" and row["address"] == "翠苑一区 5幢"
    assert client.delete(f"/api/v1/open311/keys/{issued.json['id']}",
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 204
    assert post(base, api_key=key).status_code == 403


def test_discovery(server):
    _, base = server
    doc = requests.get(f"{base}/discovery.json", timeout=5).json()
    assert doc["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert "application/json" in doc["endpoints"][0]["formats"]
    assert ET.fromstring(requests.get(f"{base}/discovery.xml", timeout=5).content).tag == "discovery"


# --- bounded input, linear address patterns, XML-safe text ---


@pytest.mark.parametrize("fields, says", [
    ({"address_string": "1" + " " * 1000}, "address_string: at most 200 characters"),
    ({"address_id": "3-1-" + " " * 100 + "302"}, "address_id: at most 40 characters"),
    ({"description": "x" * 4001}, "description: at most 4000 characters"),
    ({"first_name": "桂" * 33}, "first_name: at most 32 characters"),
    ({"last_name": "张" * 33}, "last_name: at most 32 characters"),
    ({"phone": "1" * 33}, "phone: at most 32 characters"),
    ({"email": "a" * 250 + "@example.org"}, "email: at most 254 characters"),
    ({"attribute[room]": "3" * 65}, "attribute[room]: at most 64 characters"),
    ({"attribute[window_start]": "2026-" * 20}, "attribute[window_start]: at most 64 characters"),
    ({"lat": "3" * 65}, "lat: at most 64 characters"),
    # PostgreSQL stores no NUL in text: refused here rather than failing there.
    ({"description": "请上门\u0000理发"}, "description: contains a NUL character"),
])
def test_over_long_fields_are_refused_before_parsing_naming_the_field(server, fields, says):
    app, base = server
    for fmt in ("json", "xml"):
        resp = post(base, fmt=fmt, **fields)
        assert resp.status_code == 400
        if fmt == "json":
            assert resp.json() == [{"code": 400, "description": says}]
        else:
            assert ET.fromstring(resp.content).find("error/description").text == says
    with app.app_context():
        assert app.extensions["db"].Session.scalar(select(func.count()).select_from(ServiceRequest)) == 0


@pytest.mark.parametrize("text, found", [
    ("翠苑一区5幢2单元101室", ("5", "2", "101")),
    ("3栋1单元302", ("3", "1", "302")),
    ("12号楼3单元1101", ("12", "3", "1101")),
    ("3 幢 1 单元 302 室", ("3", "1", "302")),
    ("3幢\t\n  1单元\u3000302", ("3", "1", "302")),
    ("3幢" + " " * 150 + "1单元302", ("3", "1", "302")),
    ("1" + " " * 190, None),
    ("5幢2单元", None),
])
def test_the_address_pattern_reads_squeezed_whitespace(text, found):
    match = open311.ADDRESS_TEXT.search(open311._squeeze(text))
    assert (match.groups() if match else None) == found


@pytest.mark.parametrize("text, found", [
    ("3-1-302", ("3", "1", "302")), (" 3 / 1 / 302 ", ("3", "1", "302")), ("3 -1- B12", ("3", "1", "B12")),
    ("3-1", None), ("3-1-302 x", None),
])
def test_the_address_id_pattern(text, found):
    match = open311.ADDRESS_ID.fullmatch(open311._squeeze(text))
    assert (match.groups() if match else None) == found


def test_a_long_run_of_spaces_in_the_address_still_places_the_request(server):
    app, base = server
    resp = post(base, address_id=None, address_string="3幢" + " " * 150 + "1单元302室")
    assert resp.status_code == 200, resp.text
    with app.app_context():
        req = app.extensions["db"].Session.scalar(select(ServiceRequest))
        assert (req.building_code, req.unit, req.room) == ("3", "1", "302")


def test_control_characters_do_not_break_the_xml(server):
    app, base = server
    public_id = post(base, description="请上门\u000b理发\u0001，谢谢\u001f。").json()[0]["service_request_id"]
    with app.app_context():
        session = app.extensions["db"].Session
        req = session.scalar(select(ServiceRequest).where(ServiceRequest.public_id == public_id))
        req.move_to("matching", actor="matching", note="备注\u0008含控制符")
        session.commit()
    since = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    listed = requests.get(f"{base}/requests.xml", params={"api_key": KEY}, timeout=5)
    one = requests.get(f"{base}/requests/{public_id}.xml", params={"api_key": KEY}, timeout=5)
    for resp in (listed, one):
        assert resp.status_code == 200
        root = ET.fromstring(resp.content)
        assert root.find("request/description").text == "请上门\ufffd理发\ufffd，谢谢\ufffd。"
        assert xmltodict.parse(resp.content)["service_requests"]["request"]["service_request_id"] == public_id
    updates = requests.get(f"{base}/servicerequestupdates.xml", params={"start_date": since, "api_key": KEY},
                           timeout=5)
    notes = [u.find("description").text for u in ET.fromstring(updates.content).iter("request_update")]
    assert notes == [None, "备注\ufffd含控制符"]
    # An error that echoes the path is well-formed too.
    error = requests.get(f"{base}/services/tele%0Bport.xml", timeout=5)
    assert error.status_code == 404 and ET.fromstring(error.content).find("error/code").text == "404"
