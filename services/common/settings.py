"""Configuration every service reads the same way: defaults, then the
environment, then a test mapping (flask tutorial's create_app)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from . import clock

REPO = Path(__file__).resolve().parents[2]
PORTS = {"requests": 8001, "volunteers": 8002, "notify": 8003}


def data_dir() -> Path:
    return Path(os.environ.get("LINLI_DATA_DIR", "var/data")).resolve()


def port(service: str) -> int:
    return int(os.environ.get(f"LINLI_{service.upper()}_PORT", PORTS[service]))


def _public_url(service: str) -> str:
    return os.environ.get(f"LINLI_{service.upper()}_URL", f"http://127.0.0.1:{port(service)}").rstrip("/")


def redis_url() -> str:
    return os.environ.get("LINLI_REDIS_URL", "redis://127.0.0.1:6379/0")


def _secret_key(service: str) -> str:
    """LINLI_SECRET_KEY in production. Locally a key is made once and kept
    in the data folder, so that every gunicorn worker (and every restart)
    signs sessions and CSRF tokens alike."""
    if key := os.environ.get("LINLI_SECRET_KEY"):
        return key
    path = data_dir() / f"{service}.secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x") as fh:
            fh.write(secrets.token_urlsafe(32))
    except FileExistsError:
        pass
    return path.read_text().strip()


def base_config(service: str) -> dict:
    env = os.environ
    upper = service.upper()
    return {
        "SERVICE": service,
        "SECRET_KEY": _secret_key(service),
        # One variable per service: locally all processes share one
        # environment, and each service keeps its own database.
        "DATABASE_URL": env.get(f"LINLI_{upper}_DATABASE_URL") or f"sqlite:///{data_dir() / (service + '.db')}",
        "REDIS_URL": redis_url(),
        "ADMIN_TOKEN": env.get("LINLI_ADMIN_TOKEN") or None,
        "SERVICE_TOKEN": env.get("LINLI_SERVICE_TOKEN") or None,
        # Public URLs go into links people open; API URLs are where one
        # service reads another (they differ inside docker compose).
        **{f"{name.upper()}_URL": _public_url(name) for name in PORTS},
        **{f"{name.upper()}_API_URL": env.get(f"LINLI_{name.upper()}_API_URL", _public_url(name)).rstrip("/")
           for name in PORTS},
        "DEMO": env.get("LINLI_DEMO", "1") != "0",
        "COMMUNITY_FILE": env.get("LINLI_COMMUNITY_FILE", str(REPO / "data" / "community.json")),
        "API_TITLE": f"Linli {service}",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "BABEL_DEFAULT_LOCALE": "zh_CN",
        "BABEL_DEFAULT_TIMEZONE": "Asia/Shanghai",
        "WTF_CSRF_TIME_LIMIT": None,  # never lose a half-filled form to a time-out
        # Cookies ignore ports: locally every service is 127.0.0.1, so each
        # names its session cookie, or a volunteer's sign-in would end a
        # staff member's session in the same browser.
        "SESSION_COOKIE_NAME": f"linli_{service}_session",
        # Notify holds non-urgent messages through them; matching's
        # non-urgent deadlines stand still during them (services.common.clock).
        "QUIET_HOURS": clock.quiet_hours(),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env.get("LINLI_SECURE_COOKIES", "0") == "1",
        "HTTP_TIMEOUT": float(env.get("LINLI_HTTP_TIMEOUT", "3")),
        # Web processes publish events from a thread (deploy/gunicorn.conf.py
        # turns it on); workers publish in line, after their own commit.
        "PUBLISH_IN_BACKGROUND": env.get("LINLI_PUBLISH_IN_BACKGROUND", "0") == "1",
        # Key of the requester's phone digest; the same in intake and matching.
        "PHONE_DIGEST_KEY": env.get("LINLI_PHONE_DIGEST_KEY") or env.get("LINLI_SECRET_KEY") or "linli-phone",
    }
