"""Open311 GeoReport v2 (open311.org) on intake, at /open311/v2, in JSON
and XML: discovery, services and their definitions, posting and reading
requests, tokens, and FixMyStreet's `servicerequestupdates` extension with
Linli's richer statuses.

Requests posted here take the one intake path (same validation, outbox,
events). Reads never show the requester's name, phone, email or room —
building level only. The service request id is the request's public id,
never its UUID nor the resident's tracking code.

Reads without a key are public: no free text at all (no description, no
timeline note: fixed status labels only), no staff-only matters (complaints,
parking…) and nothing but residents' requests (`_publicly_listed`). A
staff-issued key (`api_key`) reads the full record: description, notes and
the office's internal timeline steps.

Every form field is bounded in length before anything parses it, and the
address patterns run in linear time: a long run of spaces once took seconds
of backtracking.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta, timezone
from xml.etree import ElementTree as ET

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import ValidationError
from sqlalchemy import or_, select

from services.common import contract
from services.common import extensions as ext
from services.common.auth import public
from services.common.clock import SHANGHAI, utcnow
from services.common.ratelimit import limit

from . import models, operations
from .models import RESIDENT_CHANNELS, Building, Open311Key, ServiceRequest, StatusChange
from .schemas import ServiceRequestIn

open311 = Blueprint("open311", __name__, url_prefix="/open311/v2")
FMT = "<any(json, xml):fmt>"
MAX_RANGE = timedelta(days=90)
CLOSED = {"completed", "closed", "cancelled"}
# Linli's lifecycle in FixMyStreet's richer vocabulary.
FMS_STATUS = {
    "submitted": "open", "matching": "investigating", "offered": "investigating", "assigned": "action_scheduled",
    "in_progress": "in_progress", "completed": "fixed", "closed": "closed", "cancelled": "no_further_action",
    "escalated": "internal_referral",
}
# Both run on text whose whitespace runs are already one space (_squeeze):
# with only bounded quantifiers, each starting position costs a bounded
# number of steps, so a search is linear in the text. (`\s*` next to `\s*`
# backtracked cubically: a digit and 1,000 spaces took seconds.)
ADDRESS_ID = re.compile(r"(\d{1,3}) ?[-/] ?(\d{1,2}) ?[-/] ?([0-9A-Za-z-]{1,8})")
ADDRESS_TEXT = re.compile(r"(\d{1,3}) ?[幢栋号]? ?楼? ?(\d{1,2}) ?单元 ?([0-9A-Za-z-]{1,8})")
# Longest value of each form field a post may carry; checked before any
# parsing. Anything not listed (lat, long, device_id, attribute[…], …) gets
# DEFAULT_LIMIT.
FIELD_LIMITS = {
    "api_key": 200, "service_code": 32, "description": 4000, "address_string": 200, "address_id": 40,
    "first_name": 32, "last_name": 32, "phone": 32, "email": 254, "media_url": 2000,
}
DEFAULT_LIMIT = 64
# GET parameters (ids, codes, dates, status, api_key) are short lists.
QUERY_LIMIT = 1000
# Characters XML 1.0 does not allow (C0 controls but tab, CR and LF;
# surrogates; U+FFFE/U+FFFF): one in a text node makes the document unreadable.
XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# What the public feed says instead of a timeline note: a fixed label.
PUBLIC_LABELS = {
    "submitted": "已提交 / submitted", "matching": "正在寻找志愿者 / looking for a volunteer",
    "offered": "已联系志愿者 / offered to a volunteer", "assigned": "已安排 / assigned",
    "in_progress": "处理中 / in progress", "completed": "已完成 / completed", "closed": "已关闭 / closed",
    "cancelled": "已取消 / cancelled", "escalated": "已转社区工作人员 / passed to community staff",
    "extended": "办理期限已延长 / deadline extended",
}


class Open311Error(Exception):
    def __init__(self, status: int, description: str):
        super().__init__(description)
        self.status = status
        self.description = description


# --- formats ---


XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'


def _xml(root: str, item: str | None, rows) -> bytes:
    """A list as <root><item>…</item>…</root>, or one object as <root>…</root>."""
    top = ET.Element(root)
    if item is None:
        _fill(top, rows[0])
    else:
        for row in rows:
            _fill(ET.SubElement(top, item), row)
    return XML_DECLARATION + ET.tostring(top, encoding="unicode").encode("utf-8")


def _fill(node, value) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(inner, list):
                holder = ET.SubElement(node, key)
                singular = {"attributes": "attribute", "values": "value", "endpoints": "endpoint",
                            "formats": "format", "keywords": "keyword"}.get(key, "item")
                for element in inner:
                    _fill(ET.SubElement(holder, singular), element)
            else:
                _fill(ET.SubElement(node, key), inner)
    elif value is None:
        return
    elif isinstance(value, bool):
        node.text = "true" if value else "false"
    else:
        node.text = XML_ILLEGAL.sub("\ufffd", str(value))


def respond(fmt: str, root: str, item: str, rows, status: int = 200, single: bool = False) -> Response:
    if fmt == "xml":
        return Response(_xml(root, None if single else item, rows), status, mimetype="text/xml; charset=utf-8")
    body = rows[0] if single else rows
    resp = jsonify(body)
    resp.status_code = status
    return resp


@open311.errorhandler(429)
def _too_many(exc):
    fmt = request.view_args.get("fmt", "json") if request.view_args else "json"
    rows = [{"code": 429, "description": "too many requests with this api_key: wait and try again, "
                                         "or ask the community office to raise the limit"}]
    return respond(fmt, "errors", "error", rows, status=429)


@open311.errorhandler(Open311Error)
def _error(exc: Open311Error):
    fmt = request.view_args.get("fmt", "json") if request.view_args else "json"
    rows = [{"code": exc.status, "description": exc.description}]
    return respond(fmt, "errors", "error", rows, status=exc.status)


def _when(value: datetime | None) -> str | None:
    return value.astimezone(SHANGHAI).isoformat(timespec="seconds") if value else None


def _parse_date(name: str) -> datetime | None:
    text = request.args.get(name)
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Open311Error(400, f"{name} must be a W3C datetime, e.g. 2026-01-01T00:00:00Z") from exc
    return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)


# --- services ---


def _service(c: contract.Category) -> dict:
    zh, en = c.name("zh-CN"), c.name("en")
    return {"service_code": c.code, "service_name": zh, "description": f"{zh} / {en}",
            "metadata": not c.staff_only, "type": "realtime", "keywords": f"{en.lower()},{zh}",
            "group": "社区工作人员 / community staff" if c.staff_only else "志愿服务 / volunteer services"}


@open311.get(f"/discovery.{FMT}")
@public
def discovery(fmt):
    base = f"{current_app.config['REQUESTS_URL']}/open311/v2"
    return respond(fmt, "discovery", "discovery", [{
        "changeset": "2026-11-27T00:00:00+08:00",
        "contact": "翠苑一区社区办公室 / Cuiyuan District 1 community office",
        "key_service": "API keys are issued by the community office.",
        "endpoints": [{"specification": "http://wiki.open311.org/GeoReport_v2", "url": base,
                       "changeset": "2026-11-27T00:00:00+08:00", "type": "production",
                       "formats": ["text/xml", "application/json"]}],
    }], single=True)


@open311.get(f"/services.{FMT}")
@public
def services(fmt):
    return respond(fmt, "services", "service", [_service(c) for c in contract.RESIDENT_CATEGORIES])


ATTRIBUTES = [
    {"variable": True, "code": "room", "datatype": "string", "required": True, "order": 1,
     "datatype_description": "Room number, e.g. 302 (unless given in address_id)", "description": "房间号 / room"},
    {"variable": True, "code": "mode", "datatype": "singlevaluelist", "required": False, "order": 2,
     "datatype_description": "", "description": "上门或到服务站 / at home or at a service station",
     "values": [{"key": "home", "name": "上门 / at home"}, {"key": "station", "name": "服务站 / at a station"}]},
    {"variable": True, "code": "window_start", "datatype": "datetime", "required": False, "order": 3,
     "datatype_description": "ISO 8601", "description": "希望的开始时间 / preferred from"},
    {"variable": True, "code": "window_end", "datatype": "datetime", "required": False, "order": 4,
     "datatype_description": "ISO 8601", "description": "希望的结束时间 / preferred until"},
    {"variable": True, "code": "urgency", "datatype": "singlevaluelist", "required": False, "order": 5,
     "datatype_description": "", "description": "紧急程度 / urgency",
     "values": [{"key": "normal", "name": "一般 / normal"}, {"key": "urgent", "name": "紧急 / urgent"}]},
]


@open311.get(f"/services/<code>.{FMT}")
@public
def service_definition(code, fmt):
    category = contract.CATEGORY_BY_CODE.get(code)
    if category is None or category.programme:
        raise Open311Error(404, f"no service with code {code}")
    return respond(fmt, "service_definition", "service_definition",
                   [{"service_code": code, "attributes": ATTRIBUTES if not category.staff_only else []}], single=True)


# --- requests ---


def issue_key(session, name: str) -> tuple[Open311Key, str]:
    """A new API key: only its hash is kept; the key is shown this once."""
    key = secrets.token_urlsafe(24)
    row = Open311Key(name=name, key_hash=hashlib.sha256(key.encode()).hexdigest())
    session.add(row)
    return row, key


def revoke_key(row: Open311Key) -> None:
    row.revoked_at = row.revoked_at or utcnow()


def _api_key_ok(given: str) -> bool:
    if not given:
        return False
    configured = [k.strip() for k in current_app.config.get("OPEN311_API_KEYS", "").split(",") if k.strip()]
    if any(hmac.compare_digest(given.encode(), k.encode()) for k in configured):
        return True
    digest = hashlib.sha256(given.encode()).hexdigest()
    key = ext.db_session().scalar(select(Open311Key).where(Open311Key.key_hash == digest))
    return key is not None and key.revoked_at is None


def _bounded(values, limits: dict[str, int], default: int) -> None:
    """Refuse an over-long value before anything parses it, naming the
    field; and a NUL, which PostgreSQL cannot store in text."""
    for name, value in values.items(multi=True):
        limit = limits.get(name, default)
        if len(name) > 64 or len(value) > limit:
            raise Open311Error(400, f"{name[:64]}: at most {limit} characters")
        if "\x00" in value:
            raise Open311Error(400, f"{name}: contains a NUL character")


def _squeeze(text: str) -> str:
    """Whitespace runs as one space (str.split is linear), for the address patterns."""
    return " ".join(text.split())


def _location(form) -> dict:
    address_id = _squeeze(form.get("address_id", ""))
    match = ADDRESS_ID.fullmatch(address_id) if address_id else None
    if match:
        return {"building": match.group(1), "unit": match.group(2), "room": match.group(3)}
    if address_id:
        building = ext.db_session().get(Building, address_id)
        if building is not None:
            return {"building": building.code, "room": form.get("attribute[room]", "")}
        raise Open311Error(400, "address_id is a building code, or building-unit-room like 3-1-302")
    match = ADDRESS_TEXT.search(_squeeze(form.get("address_string", "")))
    if match:
        return {"building": match.group(1), "unit": match.group(2), "room": match.group(3)}
    if form.get("lat") or form.get("long"):
        raise Open311Error(400, "a location by lat/long alone cannot be placed in a building: "
                                "give address_id (e.g. 3-1-302) or address_string (e.g. 3幢1单元302)")
    raise Open311Error(400, "location is required: address_id (e.g. 3-1-302) or address_string (e.g. 3幢1单元302)")


@open311.post(f"/requests.{FMT}")
@public
@limit("open311_post", key=lambda: request.form.get("api_key", ""))
def post_request(fmt):
    form = request.form
    _bounded(form, FIELD_LIMITS, DEFAULT_LIMIT)
    if not _api_key_ok(form.get("api_key", "")):
        raise Open311Error(403, "a valid api_key is required to post requests")
    if not form.get("service_code"):
        raise Open311Error(400, "service_code is required")
    location = _location(form)
    name = f"{form.get('last_name', '')}{form.get('first_name', '')}".strip()
    values = {
        "category": form.get("service_code"), "description": form.get("description", ""),
        **location, "contact_name": name, "contact_phone": form.get("phone", ""),
        "mode": form.get("attribute[mode]", "home"), "urgency": form.get("attribute[urgency]", "normal"),
        "window_start": form.get("attribute[window_start]"), "window_end": form.get("attribute[window_end]"),
        "consent": True,  # the key holder (a partner or staff desk) records the resident's consent
    }
    if "room" not in location or not location["room"]:
        values["room"] = form.get("attribute[room]", "")
    try:
        data = ServiceRequestIn().load({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        fields_ = "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in sorted(exc.messages.items()))
        raise Open311Error(400, fields_) from exc
    session = ext.db_session()
    req = operations.submit(session, ext.outbox(), data, channel="open311", language="zh-CN",
                            digest_key=current_app.config["PHONE_DIGEST_KEY"],
                            timer=operations.timer_for(data["category"]))
    session.commit()
    notice = ("已收到，社区或邻居志愿者会尽快联系。/ "
              "Received; a neighbour volunteer or the community office will respond.")
    # GeoReport lets the token be the id itself: the request exists at once.
    return respond(fmt, "service_requests", "request", [{
        "service_request_id": req.public_id, "token": req.public_id, "service_notice": notice, "account_id": None}])


# --- reads: public, or in full with a staff-issued key ---


STAFF_ONLY = tuple(c.code for c in contract.CATEGORIES if c.staff_only)
# A health check or prenatal guidance at a building and a time says who is
# ill or expecting: sensitive personal information, never in a public feed.
HEALTH = ("health_check", "prenatal_guidance")


def _publicly_listed(query):
    """The one rule for what a keyless read may show at all: residents'
    requests (not a programme's own), in categories volunteers serve (not
    complaints and other matters for the office), and no health service."""
    return query.where(ServiceRequest.channel.in_(RESIDENT_CHANNELS),
                       ServiceRequest.category.not_in(STAFF_ONLY + HEALTH))


def _full_access() -> bool:
    """A staff-issued key in the query string reads the full record. (The
    app's request log leaves query strings out, so the key is not logged.)"""
    _bounded(request.args, {}, QUERY_LIMIT)
    return _api_key_ok(request.args.get("api_key", ""))


def _record(req: ServiceRequest, full: bool) -> dict:
    """Building level only, always. Without a key no free text: the
    description is left empty and the status note is a fixed label."""
    category = contract.CATEGORY_BY_CODE[req.category]
    last = req.history[-1] if req.history else None
    if full:
        notes = f"{req.status}{': ' + last.note if last and last.note else ''}"
    else:
        notes = PUBLIC_LABELS[req.status]
    return {
        "service_request_id": req.public_id,
        "status": "closed" if req.status in CLOSED else "open",
        "status_notes": notes,
        "service_name": category.name("zh-CN"),
        "service_code": req.category,
        "description": req.description if full else "",
        "agency_responsible": "社区工作人员" if category.staff_only else "翠邻里志愿者",
        "service_notice": "",
        "requested_datetime": _when(req.created_at),
        "updated_datetime": _when(req.updated_at),
        "expected_datetime": _when(req.appointment_at),
        "address": f"翠苑一区 {req.building.name}",
        "address_id": req.building_code,
        "zipcode": "310012",
        "media_url": "",
    }


def _one(public_id: str, full: bool) -> ServiceRequest | None:
    if len(public_id) > 16 or "\x00" in public_id:
        return None  # no such id (and PostgreSQL refuses a NUL in a query)
    query = select(ServiceRequest).where(ServiceRequest.public_id == public_id)
    return ext.db_session().scalar(query if full else _publicly_listed(query))


@open311.get(f"/requests.{FMT}")
@public
def get_requests(fmt):
    full = _full_access()
    session = ext.db_session()
    query = select(ServiceRequest).order_by(ServiceRequest.created_at.desc()).limit(1000)
    if not full:
        query = _publicly_listed(query)
    ids = [i.strip() for i in request.args.get("service_request_id", "").split(",") if i.strip()]
    if ids:
        query = query.where(ServiceRequest.public_id.in_(ids))  # overrides every other filter, as the spec says
    else:
        codes = [c.strip() for c in request.args.get("service_code", "").split(",") if c.strip()]
        if codes:
            query = query.where(ServiceRequest.category.in_(codes))
        start, end = _parse_date("start_date"), _parse_date("end_date")
        if start and end and end - start > MAX_RANGE:
            raise Open311Error(400, "start_date to end_date may not span more than 90 days")
        end = end or datetime.now(timezone.utc)
        start = start or end - MAX_RANGE
        query = query.where(ServiceRequest.created_at >= start, ServiceRequest.created_at <= end)
        wanted = {s.strip() for s in request.args.get("status", "").split(",") if s.strip()}
        if wanted - {"open", "closed"}:
            raise Open311Error(400, "status is open or closed")
        if wanted == {"closed"}:
            query = query.where(ServiceRequest.status.in_(CLOSED))
        elif wanted == {"open"}:
            query = query.where(ServiceRequest.status.not_in(CLOSED))
    rows = [_record(r, full) for r in session.scalars(query)]
    return respond(fmt, "service_requests", "request", rows)


@open311.get(f"/requests/<request_id>.{FMT}")
@public
def get_request(request_id, fmt):
    full = _full_access()
    req = _one(request_id, full)
    if req is None:
        raise Open311Error(404, f"no service request {request_id[:64]}")
    return respond(fmt, "service_requests", "request", [_record(req, full)])


@open311.get(f"/tokens/<token>.{FMT}")
@public
def get_token(token, fmt):
    # The token a post returned is the public id (never the tracking code).
    req = _one(token, _full_access())
    if req is None:
        raise Open311Error(404, f"no token {token[:64]}")
    return respond(fmt, "service_requests", "request", [{"service_request_id": req.public_id, "token": token}])


@open311.get(f"/servicerequestupdates.{FMT}")
@public
def updates(fmt):
    """FixMyStreet's extension: timeline entries in a time range. Without a
    key, only the entries a resident's tracking page shows (status changes
    and extensions), each with a fixed label, never the note; with a key,
    every entry and its note."""
    full = _full_access()
    start = _parse_date("start_date")
    if start is None:
        raise Open311Error(400, "start_date is required")
    end = _parse_date("end_date") or datetime.now(timezone.utc)
    if end - start > MAX_RANGE:
        raise Open311Error(400, "start_date to end_date may not span more than 90 days")
    query = (select(StatusChange, ServiceRequest.public_id).join(StatusChange.request)
             .where(StatusChange.at >= start, StatusChange.at <= end).order_by(StatusChange.id).limit(1000))
    if not full:
        query = _publicly_listed(query).where(
            or_(StatusChange.event.is_(None), StatusChange.event.in_(models.PUBLIC_EVENTS)))
    rows = [{"update_id": c.id, "service_request_id": public_id, "status": FMS_STATUS[c.status],
             "linli_status": c.status, "updated_datetime": _when(c.at),
             "description": c.note if full else PUBLIC_LABELS[c.event or c.status], "media_url": ""}
            for c, public_id in ext.db_session().execute(query)]
    return respond(fmt, "service_request_updates", "request_update", rows)
