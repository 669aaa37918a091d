"""Every endpoint of every service says who may open it, one way
(services.common.auth): exactly one guard per view, or per HTTP method of
a MethodView. A new endpoint without a rule fails here. And the API guards
refuse before anything parses the arguments."""
from __future__ import annotations

import pytest
from flask.views import MethodView

from services.common.auth import callers, public
from tests.conftest import ADMIN_TOKEN, REQUESTS_TOKEN

SERVICES = ("requests", "volunteers", "notify", "community")


def _unguarded(endpoint: str) -> bool:
    # Flask's static files and flask-smorest's own OpenAPI document.
    return endpoint == "static" or endpoint.endswith(".static") or endpoint.startswith("api-docs.")


def access_rules(app):
    """(method(s), rule, endpoint, marks) for every view of the app: each
    HTTP method function of a MethodView, or the view function itself."""
    for rule in app.url_map.iter_rules():
        if _unguarded(rule.endpoint):
            continue
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        if view_class is not None:
            for method in sorted(view_class.methods):
                yield method, rule.rule, rule.endpoint, getattr(getattr(view_class, method.lower()), "access", ())
        else:
            methods = ",".join(sorted(rule.methods - {"HEAD", "OPTIONS"}))
            yield methods, rule.rule, rule.endpoint, getattr(view, "access", ())


def without_one_rule(app) -> list[str]:
    return [f"{method} {path} ({endpoint}): {list(marks) or 'no access rule'}"
            for method, path, endpoint, marks in access_rules(app) if len(marks) != 1]


@pytest.mark.parametrize("service", SERVICES)
def test_every_endpoint_has_exactly_one_access_rule(make_app, service):
    app = make_app(service)
    assert len(list(access_rules(app))) > 5
    assert without_one_rule(app) == [], "give each one public, callers(...) or a signed_in guard"


def test_an_endpoint_without_a_rule_or_with_two_is_found(make_app):
    app = make_app("notify")

    class Half(MethodView):
        @public
        def get(self):
            return "open"

        def post(self):
            return "forgotten"

    app.add_url_rule("/forgotten", view_func=lambda: "no rule", endpoint="forgotten")
    app.add_url_rule("/twice", view_func=public(callers("admin")(lambda: "two rules")), endpoint="twice")
    app.add_url_rule("/half", view_func=Half.as_view("half"))
    found = without_one_rule(app)
    assert [line.split(" (")[0] for line in found] == ["GET /forgotten", "GET /twice", "POST /half"]
    assert "['callers: admin', 'public']" in found[1]


def test_the_api_guards_refuse_before_the_arguments_are_read(make_app):
    """A caller without the right token learns nothing about the schema:
    401 or 403 where the admin, sending the same, gets a 422."""
    admin, intake_token = (f"Bearer {t}" for t in (ADMIN_TOKEN, REQUESTS_TOKEN))

    def answers(client, method, path, **kwargs):
        return [client.open(path, method=method, headers={"Authorization": who} if who else {}, **kwargs).status_code
                for who in (None, intake_token, admin)]

    intake = make_app("requests").test_client()
    assert answers(intake, "POST", "/api/v1/open311/keys", json={}) == [401, 403, 422]
    refused = intake.post("/api/v1/open311/keys", json={}, headers={"Authorization": intake_token})
    assert refused.json["message"] == "this token is not for this interface"
    staff = intake.get("/api/v1/staff/requests?status=nonsense")
    assert staff.status_code == 401 and staff.json["message"] == "sign in as staff, or send the admin token"
    assert intake.get("/api/v1/staff/requests?status=nonsense", headers={"Authorization": admin}).status_code == 422

    notify = make_app("notify").test_client()
    assert answers(notify, "PUT", "/api/v1/recipients/resident:1/preferences",
                   json={"language": "fr"}) == [401, 403, 422]
    assert answers(notify, "GET", "/api/v1/deliveries?status=nonsense")[::2] == [401, 422]

    matching = make_app("volunteers").test_client()
    assert answers(matching, "POST", "/api/v1/volunteers", json={"phone": 1}) == [401, 403, 422]
