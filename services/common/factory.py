"""What every service's create_app does before adding its own views:
configuration (defaults, environment, test mapping) with its secrets
checked, database, web plumbing, CSRF, rate limits, Celery, and the outbox
for services that emit events."""
from __future__ import annotations

from flask import Flask, render_template, request
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import func, select
from werkzeug.middleware.proxy_fix import ProxyFix

from .clock import Clock
from .db import Database
from .outbox import Outbox
from .queueing import celery_init_app
from .ratelimit import init_limiter
from .settings import check_secrets
from .web import init_web
from .workdays import WorkingCalendar


def service_app(import_name: str, config: dict, test_config: dict | None, outbox_model=None) -> Flask:
    app = Flask(import_name)
    app.config.update(config)
    if test_config:
        app.config.update(test_config)
    check_secrets(app.config)
    service = app.config["SERVICE"]
    if app.config["PROXY_HOPS"]:
        # The client's address and scheme as the documented proxies saw them
        # (rate limits per address, Secure cookies, HSTS); never believed
        # from more hops than configured.
        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    app.extensions["clock"] = Clock()
    app.extensions["workdays"] = WorkingCalendar(app.config.get("WORKDAY_OVERRIDES"))
    db = Database(app.config["DATABASE_URL"])
    db.init_app(app)
    init_web(app)
    app.extensions["csrf"] = CSRFProtect(app)
    init_limiter(app)

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_template("csrf_error.html"), 400

    def error_page(exc):
        """People get a page that says what happened and whom to call;
        API clients keep flask-smorest's JSON errors."""
        api = app.extensions.get("openapi")
        if api is not None and request.path.startswith(("/api/", "/open311")):
            return api.handle_http_exception(exc)
        return render_template("error.html", code=exc.code), exc.code

    for code in (403, 404, 405, 429, 500):
        app.register_error_handler(code, error_page)

    celery_app = celery_init_app(app, service)
    if outbox_model is not None:
        app.extensions["outbox"] = Outbox(outbox_model, db, celery_app, source=service,
                                          background=app.config["PUBLISH_IN_BACKGROUND"])
    return app


class ApiBlueprint(SmorestBlueprint):
    """Every service's JSON API. Lists come in pages (`page`, `page_size`;
    the total in the X-Pagination header): no list answers with everything,
    and none is cut short without saying so."""

    DEFAULT_PAGINATION_PARAMETERS = {"page": 1, "page_size": 50, "max_page_size": 200}

    def arguments(self, schema, *args, **kwargs):
        # One instance a view: given a class, webargs builds a new schema on
        # every request (200 µs for the request form's, py-spy).
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)


def page_of(session, stmt, pagination) -> list:
    """One page of a select statement, with the total for X-Pagination."""
    pagination.item_count = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    if pagination.first_item >= pagination.item_count:
        return []  # past the end (a huge page number never reaches the database)
    return session.scalars(stmt.offset(pagination.first_item).limit(pagination.page_size)).unique().all()


def register_api(app: Flask, blueprint) -> Api:
    """The service's JSON API: bearer tokens or none, no cookie credentials
    (so no CSRF); documented by OpenAPI from the same marshmallow schemas
    that validate it, at /openapi.json and /docs."""
    app.extensions["csrf"].exempt(blueprint)
    api = Api(app)
    api.register_blueprint(blueprint)
    app.extensions["openapi"] = api
    return api


def check_before_serving(app: Flask) -> None:
    """What a web or worker process checks before it serves (gunicorn's
    post_worker_init, the Celery worker's entry point): in production, no
    demo account or demo volunteer may still be able to sign in. The
    service names its check in app.extensions["demo_leftovers"]."""
    from sqlalchemy import inspect

    from .settings import ConfigError

    leftovers = app.extensions.get("demo_leftovers")
    if app.config["DEMO"] or leftovers is None:
        return
    db = app.extensions["db"]
    try:
        if not inspect(db.engine).has_table("alembic_version"):
            return  # a new database: init-db migrates it first, and checks again then
        with app.app_context():
            left = leftovers(db.Session)
            db.Session.remove()
    finally:
        # The Celery worker checks in its parent, before it forks: a pooled
        # connection inherited by the children would be shared by them.
        db.engine.dispose()
    if left:
        raise ConfigError(f"Linli will not start in production while demo data can sign in ({left}). "
                          f"Remove it with `make remove-demo` (or `flask --app services.{app.config['SERVICE']} "
                          "remove-demo`), or run the demo on purpose with LINLI_DEMO=1.")
