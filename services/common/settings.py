"""Configuration every service reads the same way: defaults, then the
environment, then a test mapping (flask tutorial's create_app).

Secrets are checked once, at start-up (`check_secrets`): a service refuses
to start, naming the variable, when a secret is missing, shorter than 32
characters or still a placeholder. The one exception is the explicit local
demo (LINLI_DEMO=1, every address on loopback), which keeps generated keys
in its data folder. Production is the default: demo data only when asked."""
from __future__ import annotations

import json
import os
import secrets
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from limits import parse_many

from . import clock

REPO = Path(__file__).resolve().parents[2]
PORTS = {"requests": 8001, "volunteers": 8002, "notify": 8003, "community": 8004}
# The services that read other services' APIs, each with a token of its own,
# so that each caller is let into only what it needs (auth.callers).
CALLERS = ("requests", "volunteers")
MIN_SECRET = 32
PLACEHOLDERS = ("change-me", "changeme", "replace-me", "placeholder")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


class ConfigError(RuntimeError):
    """A setting that would make the service unsafe or broken; the message
    names the variable and says what to do."""


def data_dir() -> Path:
    return Path(os.environ.get("LINLI_DATA_DIR", "var/data")).resolve()


def port(service: str) -> int:
    return integer(f"LINLI_{service.upper()}_PORT", PORTS[service], minimum=1)


def _public_url(service: str) -> str:
    return os.environ.get(f"LINLI_{service.upper()}_URL", f"http://127.0.0.1:{port(service)}").rstrip("/")


def redis_url() -> str:
    return os.environ.get("LINLI_REDIS_URL", "redis://127.0.0.1:6379/0")


def flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0, not {value!r}")


def demo() -> bool:
    """Demo data only when asked for (make run asks); production otherwise."""
    return flag("LINLI_DEMO", False)


def on_loopback() -> bool:
    """Whether this deployment is reachable from this machine only: the
    address web services listen on and every public URL are loopback."""
    hosts = {os.environ.get("LINLI_BIND", "127.0.0.1")} | {urlsplit(_public_url(s)).hostname or "" for s in PORTS}
    return hosts <= LOOPBACK


def local_demo() -> bool:
    return demo() and on_loopback()


def _kept_secret(name: str) -> str:
    """A key made once and kept in the data folder (the local demo only), so
    that every process and every restart uses the same one."""
    path = data_dir() / f"{name}.secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x") as fh:
            fh.write(secrets.token_urlsafe(32))
    except FileExistsError:
        pass
    return path.read_text().strip()


def _secret(variable: str, kept_as: str | None = None) -> str | None:
    """The environment's value; in the local demo a missing one is made and kept."""
    value = os.environ.get(variable, "").strip()
    if not value and kept_as and local_demo():
        return _kept_secret(kept_as)
    return value or None


def secret_problem(variable: str, value: str | None, allow_weak: bool = False) -> str | None:
    """Why `value` is not a usable secret, or None."""
    if not value:
        return f"{variable} is not set"
    lowered = value.lower()
    if any(lowered.startswith(p) for p in PLACEHOLDERS):
        return f"{variable} is still a placeholder: put a random value there"
    minimum = SECRET_MINIMUMS.get(variable, MIN_SECRET)
    if len(value) < minimum and not allow_weak:
        return f"{variable} is shorter than {minimum} characters"
    return None


# config key → environment variable, and whether the service needs it to run.
SECRETS = {"SECRET_KEY": ("LINLI_SECRET_KEY", True), "PHONE_DIGEST_KEY": ("LINLI_PHONE_DIGEST_KEY", True),
           "ADMIN_TOKEN": ("LINLI_ADMIN_TOKEN", False),
           **{f"{c.upper()}_TOKEN": (f"LINLI_{c.upper()}_TOKEN", True) for c in CALLERS}}
# Secrets one service alone holds, checked where its configuration has them.
OWN_SECRETS = {"REGISTER_KEY": "LINLI_REGISTER_KEY",
               # The SMS and voice gateways' keys (notify), when a gateway is configured.
               "ALIYUN_SECRET": "LINLI_ALIYUN_ACCESS_KEY_SECRET", "TENCENT_SECRET": "LINLI_TENCENT_SECRET_KEY",
               # The key in the address the gateway pushes residents' replies to.
               "SMS_REPLY_KEY": "LINLI_SMS_REPLY_KEY"}
# Secrets issued by someone else, with their own length: an Alibaba Cloud
# AccessKey secret has 30 characters.
SECRET_MINIMUMS = {"LINLI_ALIYUN_ACCESS_KEY_SECRET": 30}


def check_secrets(cfg: dict) -> None:
    """Refuse to start with an unsafe secret. LINLI_ADMIN_TOKEN may be left
    out (the admin API is then closed); when given it must be strong.
    Placeholders never work, not even in the demo."""
    weak_ok = cfg.get("LOCAL_DEMO", False)
    problems = []
    for key, (variable, required) in SECRETS.items():
        value = cfg.get(key)
        if value is None and not required:
            continue
        if problem := secret_problem(variable, value, allow_weak=weak_ok):
            problems.append(problem)
    for key, variable in OWN_SECRETS.items():
        if key in cfg and (problem := secret_problem(variable, cfg[key], allow_weak=weak_ok)):
            problems.append(problem)
    if problems:
        raise ConfigError("Linli will not start: " + "; ".join(problems)
                          + ". Generate each value with `openssl rand -base64 32`.")


def _raw(name: str) -> str:
    return os.environ.get(name, "").strip()


def integer(name: str, default: int, minimum: int = 0) -> int:
    """A whole-number setting; a bad value stops start-up, naming the variable."""
    value = _raw(name)
    try:
        number = int(value) if value else default
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {number}")
    return number


def seconds(name: str, default: float) -> float:
    """A duration in seconds (fractions allowed), above zero."""
    value = _raw(name)
    try:
        number = float(value) if value else default
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {value!r}") from None
    if not number > 0:
        raise ConfigError(f"{name} must be more than 0 seconds, not {value!r}")
    return number


def json_object(name: str, example: str) -> dict:
    """A JSON object setting ({} when unset), e.g. per-category overrides."""
    value = _raw(name)
    try:
        parsed = json.loads(value) if value else {}
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ConfigError(f"{name} must be a JSON object, e.g. {example}") from None
    return parsed


def text(name: str, default: str | None = None) -> str | None:
    return _raw(name) or default


def workday_overrides() -> dict[str, str]:
    """The office's corrections to the State Council schedule
    (services.common.workdays): LINLI_WORKDAY_OVERRIDES='{"2027-02-06":
    "workday", "2027-02-10": "holiday"}'. A bad date or word stops start-up."""
    example = '{"2027-02-06": "workday", "2027-02-10": "holiday"}'
    parsed = json_object("LINLI_WORKDAY_OVERRIDES", example)
    for day, kind in parsed.items():
        try:
            date.fromisoformat(day)
        except ValueError:
            raise ConfigError(f"LINLI_WORKDAY_OVERRIDES: {day!r} is not a date like 2027-02-06") from None
        if kind not in ("workday", "holiday"):
            raise ConfigError(f"LINLI_WORKDAY_OVERRIDES: {day} must be \"workday\" or \"holiday\", not {kind!r}")
    return parsed


def community_file() -> str:
    """The community's buildings, categories and (for the demo) volunteers."""
    return text("LINLI_COMMUNITY_FILE", str(REPO / "data" / "community.json"))


def office_phone() -> str | None:
    """The community office's number (the community file's community.office.phone),
    shown wherever a page says "call the community office"."""
    with open(community_file(), encoding="utf-8") as fh:
        return ((json.load(fh).get("community") or {}).get("office") or {}).get("phone") or None


def _quiet_hours() -> tuple:
    try:
        return clock.quiet_hours(text("LINLI_QUIET_HOURS", "21:00-07:00"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


# Rate limits (Flask-Limiter syntax), per client address unless named
# otherwise. Configuration, not code: LINLI_RATE_LIMITS='{"request_form": "…"}'
# overrides any of them (the benchmark sets its own, see bench/run.py).
RATE_LIMITS = {
    # The resident form and POST /api/v1/requests, per address: a family or
    # a desk enters a few; a script entering hundreds is stopped.
    "request_form": "20 per hour;60 per day",
    # Volunteers' sign-in links: per phone (nobody gets 20 messages at 3 a.m.)
    # and per address (nobody walks the phone numbers).
    "magic_link_phone": "3 per 15 minutes;10 per day",
    "magic_link_address": "10 per 15 minutes;50 per day",
    # The daily check-in (报平安) page, per address: one tap a day per
    # resident; a building's shared connection still fits.
    "checkin": "60 per hour",
    # Open311 POST, per API key.
    "open311_post": "120 per hour",
}


def rate_limits() -> dict[str, str]:
    overrides = json_object("LINLI_RATE_LIMITS", '{"request_form": "20 per hour"}')
    unknown = set(overrides) - set(RATE_LIMITS)
    if unknown:
        raise ConfigError(f"LINLI_RATE_LIMITS: unknown limits {sorted(unknown)}; known: {sorted(RATE_LIMITS)}")
    merged = {**RATE_LIMITS, **overrides}
    for name, value in merged.items():
        try:
            parse_many(value)
        except ValueError:
            # Flask-Limiter would log and apply no limit at all: refuse instead.
            raise ConfigError(f"LINLI_RATE_LIMITS: {name} is not a limit like \"20 per hour;60 per day\"") from None
    return merged


def queue_config() -> dict:
    """What every Celery process needs (services.common.queueing), beat too."""
    limit = integer("LINLI_TASK_TIME_LIMIT", 120, minimum=1)
    return {
        "REDIS_URL": redis_url(),
        # Celery's hard limit on one task, in seconds. Redis hands a task to
        # a second worker only after the visibility timeout, so that is kept
        # longer than any task may run.
        "TASK_TIME_LIMIT": limit,
        "VISIBILITY_TIMEOUT": max(integer("LINLI_VISIBILITY_TIMEOUT", 600, minimum=1), limit + 10),
    }


def base_config(service: str) -> dict:
    upper = service.upper()
    own_url = _public_url(service)
    https = own_url.startswith("https://")
    return {
        "SERVICE": service,
        "DEMO": demo(),
        "LOCAL_DEMO": local_demo(),
        # Signs sessions and CSRF tokens. Checked by check_secrets at start-up.
        "SECRET_KEY": _secret("LINLI_SECRET_KEY", kept_as=service),
        # Key of the requester's phone digest; the same in intake and matching.
        "PHONE_DIGEST_KEY": _secret("LINLI_PHONE_DIGEST_KEY", kept_as="phone-digest"),
        # The bootstrap admin token for automation; without it the admin API is closed.
        "ADMIN_TOKEN": _secret("LINLI_ADMIN_TOKEN"),
        # Each calling service's token (LINLI_REQUESTS_TOKEN, LINLI_VOLUNTEERS_TOKEN):
        # a service presents its own and each API lets in only the callers it serves.
        **{f"{c.upper()}_TOKEN": _secret(f"LINLI_{c.upper()}_TOKEN", kept_as=f"{c}-token") for c in CALLERS},
        # One variable per service: locally all processes share one
        # environment, and each service keeps its own database.
        "DATABASE_URL": text(f"LINLI_{upper}_DATABASE_URL") or f"sqlite:///{data_dir() / (service + '.db')}",
        **queue_config(),
        # Public URLs go into links people open; API URLs are where one
        # service reads another (they differ inside docker compose).
        **{f"{name.upper()}_URL": _public_url(name) for name in PORTS},
        **{f"{name.upper()}_API_URL": text(f"LINLI_{name.upper()}_API_URL", _public_url(name)).rstrip("/")
           for name in PORTS},
        "COMMUNITY_FILE": community_file(),
        "OFFICE_PHONE": office_phone(),
        "API_TITLE": f"Linli {service}",
        "API_VERSION": "v1",
        "API_SPEC_OPTIONS": {"info": {"description": (
            "Rules OpenAPI cannot state are said in the description of the field they concern. "
            "No text anywhere in a request may hold a NUL character (422).")}},
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
        "QUIET_HOURS": _quiet_hours(),
        # Holidays and make-up working days (调休) the office adds to or
        # corrects in the published schedule (services.common.workdays).
        "WORKDAY_OVERRIDES": workday_overrides(),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # Secure by default when the service's public address is https.
        "SESSION_COOKIE_SECURE": flag("LINLI_SECURE_COOKIES", https),
        # Strict-Transport-Security on every answer served over HTTPS.
        "HSTS": flag("LINLI_HSTS", https),
        # Reverse proxies in front of the web services (X-Forwarded-For/-Proto
        # are believed from this many hops only); 0 when clients connect directly.
        "PROXY_HOPS": integer("LINLI_PROXY_HOPS", 0),
        # No request body above this (unauthenticated JSON included).
        "MAX_CONTENT_LENGTH": integer("LINLI_MAX_BODY_BYTES", 256 * 1024, minimum=1024),
        "MAX_FORM_MEMORY_SIZE": integer("LINLI_MAX_BODY_BYTES", 256 * 1024, minimum=1024),
        "RATE_LIMITS": rate_limits(),
        # One service reading another's API gives up after this (seconds).
        "HTTP_TIMEOUT": seconds("LINLI_HTTP_TIMEOUT", 3.0),
        # Web processes publish events from a thread (deploy/gunicorn.conf.py
        # turns it on); workers publish in line, after their own commit.
        "PUBLISH_IN_BACKGROUND": flag("LINLI_PUBLISH_IN_BACKGROUND", False),
    }
