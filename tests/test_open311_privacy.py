"""Open311 reads without a key are public: no free text a resident typed,
no timeline note, no staff-only matter, no programme's request, no internal
UUID or tracking code. A staff-issued key reads the full record. Requests
get a public id of their own, also given to existing rows by the migration
(which marks the demo's staff accounts too)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import inspect, select

from services.requests import VERSIONS, models, operations, staff
from services.requests.models import Base, ServiceRequest, StaffMember
from tests.conftest import ADMIN_TOKEN

KEY = "partner-key-1"
PREFIX = "/open311/v2"
# What a resident typed: a name, a room, an illness, a phone number with
# spaces (which a digit-run filter misses) and one with dashes.
DESCRIPTION = "王秀英阿姨住302，有糖尿病，腿脚不便，请上门理发，电话 138 1234 5678 或 0571-8888-1234"
STATUS_NOTE = "家属说老人独居，下午三点后在家"  # a note the resident's tracking page shows
INTERNAL_NOTE = "楼道长：她儿子上次投诉过物业"  # an office step the resident never sees
EXTENSION_REASON = "等志愿者从外地回来"
PUBLIC_ID = re.compile(r"LL-[0-9a-z]{10}")


def since() -> dict:
    """The updates feed needs a start date within 90 days."""
    start = datetime.now(timezone.utc) - timedelta(days=1)
    return {"start_date": start.isoformat(timespec="seconds").replace("+00:00", "Z")}


@pytest.fixture
def app(make_app, backend):
    return make_app("requests", backend=backend, OPEN311_API_KEYS=KEY)


def post(client, **fields):
    data = {"api_key": KEY, "service_code": "haircut", "address_id": "3-1-302", "first_name": "秀英",
            "last_name": "王", "phone": "13812345678", "description": DESCRIPTION, **fields}
    resp = client.post(f"{PREFIX}/requests.json", data=data)
    assert resp.status_code == 200, resp.text
    return resp.json[0]["service_request_id"]


def stored(app, public_id) -> ServiceRequest:
    session = app.extensions["db"].Session
    return session.scalar(select(ServiceRequest).where(ServiceRequest.public_id == public_id))


def with_timeline(app, public_id) -> ServiceRequest:
    """A status change with a note, an internal step and an extension, as
    the worker and the console write them."""
    with app.app_context():
        req = stored(app, public_id)
        assert req.move_to("matching", actor="matching", note=STATUS_NOTE)
        req.record("handed_back", "staff:1", note=INTERNAL_NOTE)
        assert operations.extend(app.extensions["db"].Session, app.extensions["outbox"], req, "staff:1", 3,
                                 EXTENSION_REASON)
        app.extensions["db"].Session.commit()
        return req


def everything_public(client, public_id, extra: dict | None = None) -> str:
    """Every keyless read, in both formats, as one text."""
    texts = []
    for fmt in ("json", "xml"):
        for path, params in ((f"/requests.{fmt}", {}), (f"/requests/{public_id}.{fmt}", {}),
                             (f"/tokens/{public_id}.{fmt}", {}),
                             (f"/servicerequestupdates.{fmt}", since())):
            texts.append(client.get(f"{PREFIX}{path}", query_string={**params, **(extra or {})}).text)
    return "\n".join(texts)


def test_public_reads_carry_no_free_text_no_notes_and_no_internal_ids(app, client):
    public_id = post(client)
    req = with_timeline(app, public_id)
    raw = everything_public(client, public_id)
    for secret in (DESCRIPTION, "王秀英", "糖尿病", "138 1234 5678", "0571-8888-1234", "302",
                   STATUS_NOTE, INTERNAL_NOTE, EXTENSION_REASON, req.id, req.tracking_code):
        assert secret not in raw, secret

    [one] = client.get(f"{PREFIX}/requests/{public_id}.json").json
    assert one["service_request_id"] == public_id and one["description"] == ""
    assert one["status_notes"] == "正在寻找志愿者 / looking for a volunteer"  # a fixed label, not the note
    assert (one["address"], one["address_id"]) == ("翠苑一区 3幢", "3")
    # Updates: the entries the tracking page shows (status changes and the
    # extension), each with a fixed label; the hand-back is not there.
    updates = client.get(f"{PREFIX}/servicerequestupdates.json", query_string=since())
    assert [(u["service_request_id"], u["linli_status"], u["description"]) for u in updates.json] == [
        (public_id, "submitted", "已提交 / submitted"),
        (public_id, "matching", "正在寻找志愿者 / looking for a volunteer"),
        (public_id, "matching", "办理期限已延长 / deadline extended"),
    ]
    # The internal UUID and the tracking code find nothing.
    for other in (req.id, req.tracking_code):
        assert client.get(f"{PREFIX}/requests/{other}.json").status_code == 404
        assert client.get(f"{PREFIX}/tokens/{other}.json").status_code == 404
        assert client.get(f"{PREFIX}/requests.json", query_string={"service_request_id": other}).json == []


def test_a_staff_issued_key_reads_the_full_record(app, client):
    public_id = post(client)
    with_timeline(app, public_id)
    issued = client.post("/api/v1/open311/keys", json={"name": "12345 热线"},
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    for key in (KEY, issued.json["api_key"]):
        [one] = client.get(f"{PREFIX}/requests/{public_id}.json", query_string={"api_key": key}).json
        assert one["description"] == DESCRIPTION
        assert one["status_notes"] == f"matching: {EXTENSION_REASON}"
        updates = client.get(f"{PREFIX}/servicerequestupdates.json",
                             query_string={**since(), "api_key": key}).json
        assert [u["description"] for u in updates] == ["", STATUS_NOTE, INTERNAL_NOTE, EXTENSION_REASON]
        assert {u["service_request_id"] for u in updates} == {public_id}
    # A wrong or revoked key reads what everyone reads.
    client.delete(f"/api/v1/open311/keys/{issued.json['id']}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    for key in ("wrong", issued.json["api_key"]):
        [one] = client.get(f"{PREFIX}/requests/{public_id}.json", query_string={"api_key": key}).json
        assert one["description"] == ""


def test_staff_only_matters_health_services_and_programmes_are_not_public(app, client):
    complaint = post(client, service_code="complaint", description="投诉302邻居半夜噪音")
    prenatal = post(client, service_code="prenatal_guidance", description="孕检咨询")
    visit = post(client, description="探访独居老人")
    with app.app_context():
        stored(app, visit).channel = "visit"  # a programme's own request, not a resident's
        app.extensions["db"].Session.commit()
    assert client.get(f"{PREFIX}/requests.json").json == []
    assert client.get(f"{PREFIX}/servicerequestupdates.json", query_string=since()).json == []
    assert b"<request>" not in client.get(f"{PREFIX}/requests.xml").data
    for hidden in (complaint, prenatal, visit):
        assert client.get(f"{PREFIX}/requests/{hidden}.xml").status_code == 404
        assert client.get(f"{PREFIX}/tokens/{hidden}.json").status_code == 404
        assert client.get(f"{PREFIX}/requests.json", query_string={"service_request_id": hidden}).json == []
    # The key holder (the office's partner desk) still sees both.
    listed = client.get(f"{PREFIX}/requests.json", query_string={"api_key": KEY}).json
    assert {r["service_request_id"] for r in listed} == {complaint, prenatal, visit}
    updates = client.get(f"{PREFIX}/servicerequestupdates.json", query_string={**since(), "api_key": KEY}).json
    assert {u["service_request_id"] for u in updates} == {complaint, prenatal, visit}


def test_the_public_id_is_neither_the_uuid_nor_the_tracking_code(app, client):
    resp = client.post(f"{PREFIX}/requests.json", data={
        "api_key": KEY, "service_code": "haircut", "address_id": "3-1-302", "first_name": "秀英", "last_name": "王",
        "phone": "13812345678", "description": "理发"})
    [created] = resp.json
    assert PUBLIC_ID.fullmatch(created["service_request_id"])
    assert created["token"] == created["service_request_id"]
    with app.app_context():
        req = stored(app, created["service_request_id"])
        assert created["service_request_id"] not in (req.id, req.tracking_code)
        assert models.normalise_tracking_code(created["service_request_id"]) != req.tracking_code
    token = client.get(f"{PREFIX}/tokens/{created['token']}.json").json
    assert token == [{"service_request_id": created["service_request_id"], "token": created["token"]}]


def test_the_migration_gives_existing_requests_a_public_id(app, client):
    for _ in range(3):
        post(client)
    db = app.extensions["db"]
    cfg = db.alembic_config(VERSIONS, Base.metadata)
    with app.app_context():
        command.downgrade(cfg, "8ab0c1eb1a92")
        assert "public_id" not in {c["name"] for c in inspect(db.engine).get_columns("service_request")}
        command.upgrade(cfg, "head")
        rows = db.Session.execute(select(ServiceRequest.id, ServiceRequest.public_id)).all()
        db.Session.remove()
    assert len(rows) == 3 and all(PUBLIC_ID.fullmatch(public_id) for _, public_id in rows)
    assert len({public_id for _, public_id in rows}) == 3
    indexes = {i["name"]: i for i in inspect(db.engine).get_indexes("service_request")}
    assert indexes["ix_service_request_public_id"]["unique"]
    # The ids the migration gave are the ones Open311 answers to.
    for _, public_id in rows:
        assert client.get(f"{PREFIX}/requests/{public_id}.json").status_code == 200


def test_the_demos_staff_accounts_are_marked(make_app):
    app = make_app("requests", DEMO=True, DEMO_STAFF_PASSWORD="demo-password-1234")
    with app.app_context():
        session = app.extensions["db"].Session
        marked = dict(session.execute(select(StaffMember.username, StaffMember.demo)).all())
        assert marked == {"office": True, "grid1": True, "hall-3-1": True}
        real = staff.create(session, "zhou", "a-long-password-1", "admin", "周主任")
        session.commit()
        assert real.demo is False
