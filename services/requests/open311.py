"""Open311 GeoReport v2 (open311.org) on intake, at /open311/v2, in JSON
and XML: discovery, services and their definitions, posting and reading
requests, tokens, and FixMyStreet's `servicerequestupdates` extension with
Linli's richer statuses.

Requests posted here take the one intake path (same validation, outbox,
events). Reads never show the requester's name, phone, email or room —
building level only; the service request id is the request's UUID, never
the resident's tracking code.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timedelta, timezone
from xml.etree import ElementTree as ET

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import ValidationError
from sqlalchemy import select

from services.common import contract
from services.common.web import SHANGHAI

from . import models
from .models import Building, Open311Key, ServiceRequest, StatusChange
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
ADDRESS_ID = re.compile(r"^\s*(\d{1,3})\s*[-/]\s*(\d{1,2})\s*[-/]\s*([0-9A-Za-z-]{1,8})\s*$")
ADDRESS_TEXT = re.compile(r"(\d{1,3})\s*[幢栋号]?\s*楼?\s*(\d{1,2})\s*单元\s*([0-9A-Za-z-]{1,8})\s*室?")
PHONE_LIKE = re.compile(r"\d{7,}")


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
        node.text = str(value)


def respond(fmt: str, root: str, item: str, rows, status: int = 200, single: bool = False) -> Response:
    if fmt == "xml":
        return Response(_xml(root, None if single else item, rows), status, mimetype="text/xml; charset=utf-8")
    body = rows[0] if single else rows
    resp = jsonify(body)
    resp.status_code = status
    return resp


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
    return {"service_code": c.code, "service_name": c.zh, "description": f"{c.zh} / {c.en}",
            "metadata": not c.staff_only, "type": "realtime", "keywords": f"{c.en.lower()},{c.zh}",
            "group": "社区工作人员 / community staff" if c.staff_only else "志愿服务 / volunteer services"}


@open311.get(f"/discovery.{FMT}")
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
def services(fmt):
    return respond(fmt, "services", "service", [_service(c) for c in contract.CATEGORIES])


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
def service_definition(code, fmt):
    category = contract.CATEGORY_BY_CODE.get(code)
    if category is None:
        raise Open311Error(404, f"no service with code {code}")
    return respond(fmt, "service_definition", "service_definition",
                   [{"service_code": code, "attributes": ATTRIBUTES if not category.staff_only else []}], single=True)


# --- requests ---


def _api_key_ok(given: str) -> bool:
    if not given:
        return False
    configured = [k.strip() for k in current_app.config.get("OPEN311_API_KEYS", "").split(",") if k.strip()]
    if any(hmac.compare_digest(given.encode(), k.encode()) for k in configured):
        return True
    digest = hashlib.sha256(given.encode()).hexdigest()
    key = current_app.extensions["db"].Session.scalar(select(Open311Key).where(Open311Key.key_hash == digest))
    return key is not None and key.revoked_at is None


def _location(form) -> dict:
    address_id = form.get("address_id", "")
    match = ADDRESS_ID.match(address_id) if address_id else None
    if match:
        return {"building": match.group(1), "unit": match.group(2), "room": match.group(3)}
    if address_id:
        building = current_app.extensions["db"].Session.get(Building, address_id.strip())
        if building is not None:
            return {"building": building.code, "room": form.get("attribute[room]", "")}
        raise Open311Error(400, "address_id is a building code, or building-unit-room like 3-1-302")
    match = ADDRESS_TEXT.search(form.get("address_string", ""))
    if match:
        return {"building": match.group(1), "unit": match.group(2), "room": match.group(3)}
    if form.get("lat") or form.get("long"):
        raise Open311Error(400, "a location by lat/long alone cannot be placed in a building: "
                                "give address_id (e.g. 3-1-302) or address_string (e.g. 3幢1单元302)")
    raise Open311Error(400, "location is required: address_id (e.g. 3-1-302) or address_string (e.g. 3幢1单元302)")


@open311.post(f"/requests.{FMT}")
def post_request(fmt):
    form = request.form
    if not _api_key_ok(form.get("api_key", "")):
        raise Open311Error(403, "a valid api_key is required to post requests")
    if not form.get("service_code"):
        raise Open311Error(400, "service_code is required")
    if len(form.get("description", "")) > 4000:
        raise Open311Error(400, "description: at most 4000 characters")
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
    session = current_app.extensions["db"].Session
    req = models.submit(session, current_app.extensions["outbox"], data, channel="open311", language="zh-CN",
                        digest_key=current_app.config["PHONE_DIGEST_KEY"],
                        timer=current_app.extensions["timers"][data["category"]])
    session.commit()
    notice = ("已收到，社区或邻居志愿者会尽快联系。/ "
              "Received; a neighbour volunteer or the community office will respond.")
    return respond(fmt, "service_requests", "request", [{
        "service_request_id": req.id, "token": req.id, "service_notice": notice, "account_id": None}])


def _public(req: ServiceRequest) -> dict:
    """Building level only; phone-like digit runs in the description masked."""
    category = contract.CATEGORY_BY_CODE[req.category]
    last = req.history[-1] if req.history else None
    return {
        "service_request_id": req.id,
        "status": "closed" if req.status in CLOSED else "open",
        "status_notes": f"{req.status}{': ' + last.note if last and last.note else ''}",
        "service_name": category.zh,
        "service_code": req.category,
        "description": PHONE_LIKE.sub(lambda m: "*" * len(m.group()), req.description),
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


@open311.get(f"/requests.{FMT}")
def get_requests(fmt):
    session = current_app.extensions["db"].Session
    query = select(ServiceRequest).order_by(ServiceRequest.created_at.desc()).limit(1000)
    ids = [i.strip() for i in request.args.get("service_request_id", "").split(",") if i.strip()]
    if ids:
        query = query.where(ServiceRequest.id.in_(ids))  # overrides every other filter, as the spec says
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
    rows = [_public(r) for r in session.scalars(query)]
    return respond(fmt, "service_requests", "request", rows)


@open311.get(f"/requests/<request_id>.{FMT}")
def get_request(request_id, fmt):
    req = current_app.extensions["db"].Session.get(ServiceRequest, request_id)
    if req is None:
        raise Open311Error(404, f"no service request {request_id}")
    return respond(fmt, "service_requests", "request", [_public(req)])


@open311.get(f"/tokens/<token>.{FMT}")
def get_token(token, fmt):
    req = current_app.extensions["db"].Session.get(ServiceRequest, token)
    if req is None:
        raise Open311Error(404, f"no token {token}")
    return respond(fmt, "service_requests", "request", [{"service_request_id": req.id, "token": token}])


@open311.get(f"/servicerequestupdates.{FMT}")
def updates(fmt):
    """FixMyStreet's extension: status changes in a time range."""
    start = _parse_date("start_date")
    if start is None:
        raise Open311Error(400, "start_date is required")
    end = _parse_date("end_date") or datetime.now(timezone.utc)
    if end - start > MAX_RANGE:
        raise Open311Error(400, "start_date to end_date may not span more than 90 days")
    changes = current_app.extensions["db"].Session.scalars(
        select(StatusChange).where(StatusChange.at >= start, StatusChange.at <= end).order_by(StatusChange.id)
        .limit(1000))
    rows = [{"update_id": c.id, "service_request_id": c.request_id, "status": FMS_STATUS[c.status],
             "linli_status": c.status, "updated_datetime": _when(c.at), "description": c.note, "media_url": ""}
            for c in changes]
    return respond(fmt, "service_request_updates", "request_update", rows)
