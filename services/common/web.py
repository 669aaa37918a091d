"""Web plumbing every service shares: health and readiness probes, the page
layout and stylesheet, language selection, security headers, structured
logs with a request id. (Who may open what: auth.py.)"""
from __future__ import annotations

import json
import logging
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import requests as http
from celery import current_task
from flask import Blueprint, current_app, g, jsonify, render_template, request
from flask_babel import Babel, format_datetime, get_locale
from flask_smorest import abort
from werkzeug.routing import IntegerConverter

from . import extensions as ext
from .auth import STAFF_HEADER, public, vouch
from .contract import MAX_ID
from .queueing import redis_client

LANGS = {"zh-CN": "zh_CN", "en": "en"}

common = Blueprint("common", __name__, template_folder="templates", static_folder="static",
                   static_url_path="/static/common")


@common.get("/healthz")
@public
def healthz():
    return jsonify(status="ok", service=current_app.config["SERVICE"])


@common.get("/readyz")
@public
def readyz():
    checks = {}
    try:
        ext.database().ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = type(exc).__name__
    try:
        redis_client(current_app.config["REDIS_URL"]).ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = type(exc).__name__
    ok = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503


@common.get("/docs")
@public
def docs():
    """A browsable page of the OpenAPI document, served from here (no
    scripts from elsewhere: the CSP allows none, and the site may be offline)."""
    api = current_app.extensions.get("openapi")
    if api is None:
        return render_template("not_found.html"), 404
    return render_template("docs.html", spec=api.spec.to_dict())


def _headers() -> dict | None:
    """This service's caller token and, on a staff page, the member's claims."""
    token = current_app.config.get(f"{current_app.config['SERVICE'].upper()}_TOKEN")
    if not token:
        return None
    headers = {"Authorization": f"Bearer {token}"}
    if (claims := g.get("acting")) is not None:
        headers[STAFF_HEADER] = vouch(claims)  # the staff member this page is for (auth.py)
    return headers


def _read(api_url_key: str, path: str, stream: bool = False) -> http.Response | None:
    headers = _headers()
    if headers is None:
        return None
    try:
        # A download may be written whole before its first byte (a register
        # of 10,000 residents as XLSX takes openpyxl seconds): it waits longer.
        timeout = max(30.0, current_app.config["HTTP_TIMEOUT"] * 4) if stream else current_app.config["HTTP_TIMEOUT"]
        resp = http.get(f"{current_app.config[api_url_key]}{path}", headers=headers, timeout=timeout,
                        **({"stream": True} if stream else {}))
        resp.raise_for_status()
        if not stream:
            resp.json()  # an answer that is not JSON is no answer
        return resp
    except (http.RequestException, ValueError) as exc:
        # The path names ids only (no phone, no name): fine in a log line.
        logging.getLogger("linli.http").warning("service read failed", extra={"path": path,
                                                                              "error": type(exc).__name__})
        return None


def read_service(api_url_key: str, path: str):
    """Read another service's public API with this service's own caller
    token (never its database). None when it cannot answer: pages degrade,
    they do not fail."""
    resp = _read(api_url_key, path)
    return resp.json() if resp is not None else None


def read_download(api_url_key: str, path: str) -> http.Response | None:
    """A file another service's API gives (CSV, XLSX), opened as a stream
    for the page to pass on as it arrives; None when it cannot answer."""
    return _read(api_url_key, path, stream=True)


def read_page(api_url_key: str, path: str) -> tuple[list, dict] | None:
    """One page of another service's list and its X-Pagination (total,
    pages): a desk page shows 50 rows of thousands without reading them all."""
    resp = _read(api_url_key, path)
    if resp is None:
        return None
    return resp.json(), json.loads(resp.headers.get("X-Pagination", "{}"))


def read_all_pages(api_url_key: str, path: str, max_pages: int = 100) -> list | None:
    """Every item of a paginated list (flask-smorest's X-Pagination), read
    200 at a time; None when any page cannot be read, never a list cut short
    without anyone knowing."""
    items, page = [], 1
    sep = "&" if "?" in path else "?"
    while page:
        if page > max_pages:
            logging.getLogger("linli.http").warning("list longer than read", extra={"path": path,
                                                                                "pages": max_pages})
            return None
        resp = _read(api_url_key, f"{path}{sep}page_size=200&page={page}")
        if resp is None:
            return None
        items += resp.json()
        page = json.loads(resp.headers.get("X-Pagination", "{}")).get("next_page")
    return items


def select_locale():
    wanted = request.args.get("lang") or request.cookies.get("lang")
    return LANGS.get(wanted, "zh_CN")


def elder_mode() -> bool:
    """Elder mode (长辈版): larger text and targets, chosen on any page."""
    return (request.args.get("elder") or request.cookies.get("elder")) == "1"


def current_lang() -> str:
    """The contract's language code (zh-CN / en) for the current page."""
    return "en" if str(get_locale()).startswith("en") else "zh-CN"


def local_time(value: datetime | None, fmt: str = "yyyy-MM-dd HH:mm") -> str:
    """Times are stored in UTC and shown in Asia/Shanghai."""
    if value is None:
        return ""
    return format_datetime(value, fmt)


class JsonFormatter(logging.Formatter):
    """One JSON object a line. Callers pass ids in `extra`, never a phone
    number or an address. A line written while a Celery task runs carries
    the task's id and name, so one task's lines can be found together."""

    SKIP = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def format(self, record):
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in self.SKIP})
        if isinstance(entry.get("data"), dict):
            # Celery's task lines carry the task's arguments: an envelope may
            # hold a volunteer's phone number (a registration), never logged.
            entry["data"] = {k: v for k, v in entry["data"].items() if k not in ("args", "kwargs")}
        if current_task and current_task.request.id:
            entry.setdefault("task_id", current_task.request.id)
            entry.setdefault("task", current_task.name)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging() -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


class IdConverter(IntegerConverter):
    """`<id:…>` in a route: a positive integer that fits a database id;
    anything larger is a 404, not an overflow in the database driver."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=MAX_ID)


def _nul_field() -> tuple[str, str] | None:
    """(location, field) of the first NUL character sent, if any. No text
    Linli keeps may hold one (PostgreSQL refuses it, and nobody types it)."""
    sources = {"query": request.args, "form": request.form}
    body = request.get_json(silent=True) if request.is_json else None
    for location, values in sources.items():
        for key, value in values.items(multi=True):
            if "\x00" in key or "\x00" in value:
                return location, key.replace("\x00", "")

    def walk(value, path):
        if isinstance(value, str):
            return path if "\x00" in value else None
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, inner in items:
            if isinstance(key, str) and "\x00" in key:
                return key.replace("\x00", "")
            if found := walk(inner, key if path == "" else f"{path}.{key}"):
                return found
        return None

    found = walk(body, "") if body is not None else None
    return ("json", found or "_schema") if found is not None else None


def init_web(app) -> None:
    """What every service's factory does to its Flask app."""
    configure_logging()
    app.url_map.converters["id"] = IdConverter
    app.register_blueprint(common)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(Path(__file__).with_name("translations")))
    Babel(app, locale_selector=select_locale)
    app.jinja_env.globals.update(current_lang=current_lang, elder_mode=elder_mode,
                                 office_phone=app.config.get("OFFICE_PHONE"))
    app.jinja_env.filters["local_time"] = local_time
    log = logging.getLogger("linli.http")

    def log_exception(exc_info):
        # Flask's own names the path, which may hold a sign-in link, an offer
        # link or a tracking code: the route's pattern instead.
        route = request.url_rule.rule if request.url_rule is not None else "(no route)"
        app.logger.error("Exception on %s [%s]", route, request.method, exc_info=exc_info)

    app.log_exception = log_exception

    @app.before_request
    def _request_id():
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex

    @app.before_request
    def _body_limit():
        # One view may take a larger body than the rest (a roster upload):
        # set here, before anything reads the body.
        if (larger := app.config.get("BODY_LIMITS", {}).get(request.endpoint)) is not None:
            request.max_content_length = larger

    @app.before_request
    def _refuse_nul():
        if request.method in ("GET", "HEAD", "OPTIONS") and not request.args:
            return None
        if request.path.startswith("/open311/"):
            return None  # Open311 answers NULs itself, in GeoReport's error format
        if (where := _nul_field()) is None:
            return None
        location, name = where
        if request.path.startswith("/api/"):
            abort(422, errors={location: {name: ["NUL characters are not allowed."]}})
        return render_template("error.html", code=400), 400

    @app.after_request
    def _headers(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
        # Choices made with a visible switch are remembered for a year.
        if request.args.get("lang") in LANGS:
            response.set_cookie("lang", request.args["lang"], max_age=365 * 86400, samesite="Lax")
        if current_app.config.get("HSTS") and request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if request.args.get("elder") in ("0", "1"):
            response.set_cookie("elder", request.args["elder"], max_age=365 * 86400, samesite="Lax")
        if request.path not in ("/healthz", "/readyz"):
            # The route's pattern (/track/<code>), never the path itself:
            # sign-in links, offer links and tracking codes are secrets.
            route = request.url_rule.rule if request.url_rule is not None else "(no route)"
            log.info("request", extra={"request_id": g.get("request_id"), "method": request.method,
                                       "route": route, "status": response.status_code})
        return response
