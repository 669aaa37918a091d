"""Typed accessors for what every service's factory sets up on its Flask
app (services.common.factory): the clock, the database, its session, the
outbox and Celery. One name each, in place of string lookups in app.extensions."""
from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy.orm import scoped_session

    from .clock import Clock
    from .db import Database
    from .outbox import Outbox


def database() -> Database:
    return current_app.extensions["db"]


def db_session() -> scoped_session:
    """The request's (or task's) session: removed at the end of the app context."""
    return current_app.extensions["db"].Session


def outbox() -> Outbox:
    return current_app.extensions["outbox"]


def celery() -> Celery:
    return current_app.extensions["celery"]


def clock() -> Clock:
    """The app's clock; services read it through services.common.clock.utcnow."""
    return current_app.extensions["clock"]
