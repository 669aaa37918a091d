"""Who may open what, said the same way in every service: each view carries
exactly one guard, as a decorator, and the guard marks the view
(`view.access`) so that tests/test_access.py finds any endpoint without one.

- `callers(*allowed)`: the JSON APIs' bearer tokens ("admin" is
  LINLI_ADMIN_TOKEN; "requests"/"volunteers" the calling service's token).
  Outermost, above flask-smorest's decorators: a caller without a token is
  refused before the arguments are parsed, so learns nothing of the schema.
- `signed_in(identify, refuse)`: a browser session (the staff console, the
  volunteer portal, the staff API's reads).
- `public`: open to anybody (residents' pages, tracking, Open311 with its own
  API-key rule inside, health). Rules that depend on the data (whose inbox,
  whether a volunteer is on the request) stay inside the view, after the guard.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps

from flask import current_app, request
from flask_smorest import abort

from .settings import CALLERS


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else ""


def bearer_matches(*names: str) -> bool:
    """Whether `Authorization: Bearer <token>` carries one of the configured
    tokens (by config name); none configured matches nothing."""
    given = _bearer()
    return any(given and (expected := current_app.config.get(name))
               and hmac.compare_digest(given.encode(), expected.encode()) for name in names)


def caller() -> str | None:
    """Who is calling, by bearer token: "admin", or the calling service's
    name ("requests", "volunteers"); None for anybody else."""
    if bearer_matches("ADMIN_TOKEN"):
        return "admin"
    return next((c for c in CALLERS if bearer_matches(f"{c.upper()}_TOKEN")), None)


def require_caller(*allowed: str) -> str:
    """Let in only the named callers ("admin" and/or service names): each
    service's token opens just what that service needs."""
    who = caller()
    if who is None:
        abort(401, message="a valid bearer token is required")
    if who not in allowed:
        abort(403, message="this token is not for this interface")
    return who


def _mark(view: Callable, rule: str) -> Callable:
    # A tuple, so that a view given two guards shows two marks (and fails the test).
    view.access = (*getattr(view, "access", ()), rule)
    return view


def public(view: Callable) -> Callable:
    """Open to anybody: the view itself decides the rest (a tracking code,
    an offer link's token, an Open311 API key)."""
    return _mark(view, "public")


def callers(*allowed: str) -> Callable[[Callable], Callable]:
    """Only these bearer-token callers: 401 without a valid token, 403 for a
    token not in `allowed`. functools.wraps keeps flask-smorest's `_apidoc`,
    so the OpenAPI document does not change."""
    def guard(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            require_caller(*allowed)
            return view(*args, **kwargs)
        return _mark(wrapper, f"callers: {', '.join(allowed)}")
    return guard


def signed_in(identify: Callable[[], bool], refuse: Callable[[], object]) -> Callable[[Callable], Callable]:
    """A guard for a browser session: `identify()` finds who is signed in
    (and puts them on `g`) and says whether they may go on; anybody else
    gets `refuse()` (a redirect to the sign-in page, or an error)."""
    def guard(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            if not identify():
                return refuse()
            return view(*args, **kwargs)
        return _mark(wrapper, f"signed in: {identify.__name__}")
    return guard
