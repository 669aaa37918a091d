"""Rate limits for the public doors (the resident form, the request API,
volunteers' sign-in links, Open311 posts), counted in Redis by
Flask-Limiter so that every web worker of a service shares one count.

The limits themselves are configuration (settings.RATE_LIMITS, overridden by
LINLI_RATE_LIMITS). A view takes one with `@limit("request_form")`, counted
per client address (the real one behind the documented proxies: ProxyFix in
the factory), or with `key=` for another key, e.g. per phone.

When Redis cannot be reached the limiter fails open and logs it: a limit is
there to stop abuse, never to stop the community office from working, and
the Redis client's short time-outs keep a frozen Redis from hanging a page.
Past a limit, people get the error page in their language (whom to call),
API clients a JSON 429."""
from __future__ import annotations

import hashlib
from collections.abc import Callable

from flask import current_app, request
from flask_limiter import Limiter


def hashed(value: str) -> str:
    """A limit's key never names a phone number or an address in Redis."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def client_address() -> str:
    return hashed(request.remote_addr or "unknown")


limiter = Limiter(
    key_func=client_address,
    headers_enabled=True,
    swallow_errors=True,  # fail open, logging the storage error
    strategy="fixed-window",
)


def init_limiter(app) -> None:
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["REDIS_URL"])
    # Short time-outs: a frozen Redis costs a request half a second, not a hang.
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_timeout": 0.5, "socket_connect_timeout": 0.5})
    app.config.setdefault("RATELIMIT_KEY_PREFIX", f"linli:ratelimit:{app.config['SERVICE']}")
    limiter.init_app(app)


def limit(name: str, key: Callable[[], str] | None = None):
    """The named limit from configuration, per client address or per `key`,
    on POSTs. Every view that takes the same name shares one count (the form
    and the API share "request_form")."""
    return limiter.shared_limit(lambda: current_app.config["RATE_LIMITS"][name], scope=name,
                                key_func=(lambda: hashed(key())) if key else None, methods=["POST"])
