"""What every service's create_app does before adding its own views:
configuration (defaults, environment, test mapping), database, web
plumbing, CSRF, Celery, and the outbox for services that emit events."""
from __future__ import annotations

from flask import Flask, render_template, request
from flask_smorest import Api
from flask_wtf.csrf import CSRFError, CSRFProtect

from .db import Database
from .outbox import Outbox
from .queueing import celery_init_app
from .web import init_web


def service_app(import_name: str, config: dict, test_config: dict | None, outbox_model=None) -> Flask:
    app = Flask(import_name)
    app.config.update(config)
    if test_config:
        app.config.update(test_config)
    service = app.config["SERVICE"]
    db = Database(app.config["DATABASE_URL"])
    db.init_app(app)
    init_web(app)
    app.extensions["csrf"] = CSRFProtect(app)

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


def register_api(app: Flask, blueprint) -> Api:
    """The service's JSON API: bearer tokens or none, no cookie credentials
    (so no CSRF); documented by OpenAPI from the same marshmallow schemas
    that validate it, at /openapi.json and /docs."""
    app.extensions["csrf"].exempt(blueprint)
    api = Api(app)
    api.register_blueprint(blueprint)
    app.extensions["openapi"] = api
    return api
