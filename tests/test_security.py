"""Safe by default, across the services: secrets checked at start-up,
production unless the demo is asked for, the operator's environment over
.env, tokens kept out of logs, rate limits, bounded bodies, database errors
without values, spreadsheet cells that cannot run, HTTPS hardening."""
from __future__ import annotations

import csv
import importlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy.exc import IntegrityError

from services.common import settings, tables
from services.common.settings import ConfigError
from tests.conftest import SECRET_ENV
from tests.factories import RESIDENT

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("requests", "volunteers", "notify", "community")


@pytest.fixture
def environment(monkeypatch, tmp_path):
    """A clean production environment with strong secrets; tests take them away."""
    for key in list(os.environ):
        if key.startswith("LINLI_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LINLI_DATA_DIR", str(tmp_path))
    for key, value in SECRET_ENV.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def start(service: str, **config):
    module = importlib.import_module(f"services.{service}")
    return module.create_app({"DATABASE_URL": "sqlite://", **config} if config else {"DATABASE_URL": "sqlite://"})


# --- secrets and the demo ---


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("variable, value, says", [
    ("LINLI_SECRET_KEY", "change-me-secret", "placeholder"),
    ("LINLI_SECRET_KEY", "short-but-random-7Hq", "shorter than 32"),
    ("LINLI_SECRET_KEY", None, "not set"),
    ("LINLI_ADMIN_TOKEN", "change-me-admin", "placeholder"),
    ("LINLI_REQUESTS_TOKEN", "change-me", "placeholder"),
    ("LINLI_VOLUNTEERS_TOKEN", "tiny", "shorter than 32"),
    ("LINLI_PHONE_DIGEST_KEY", None, "not set"),
])
def test_a_service_refuses_to_start_with_an_unsafe_secret_and_names_it(environment, service, variable, value, says):
    if value is None:
        environment.delenv(variable)
    else:
        environment.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        start(service)
    assert variable in str(refused.value) and says in str(refused.value)
    assert (value or "\0") not in str(refused.value)  # the refusal does not print the secret


def test_env_example_as_shipped_starts_nothing(environment):
    """The operator who copies .env.example and forgets to edit it gets a refusal, not a service."""
    for line in (ROOT / ".env.example").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            environment.setenv(key, value)
    for service in SERVICES:
        with pytest.raises(ConfigError) as refused:
            start(service)
        for variable in ("LINLI_SECRET_KEY", "LINLI_ADMIN_TOKEN", "LINLI_REQUESTS_TOKEN", "LINLI_PHONE_DIGEST_KEY"):
            assert variable in str(refused.value)
    assert settings.demo() is False  # and it ships production


def test_the_admin_token_may_be_left_out_which_closes_the_admin_api(environment):
    environment.delenv("LINLI_ADMIN_TOKEN")
    app = start("requests")
    assert app.config["ADMIN_TOKEN"] is None
    assert app.test_client().post("/api/v1/open311/keys", json={"name": "x"},
                                  headers={"Authorization": "Bearer "}).status_code == 401


def test_production_is_the_default(environment):
    assert start("volunteers").config["DEMO"] is False
    environment.setenv("LINLI_DEMO", "yes please")
    with pytest.raises(ConfigError, match="LINLI_DEMO"):
        start("volunteers")


def test_the_local_demo_makes_its_own_keys_but_never_takes_a_placeholder(environment, tmp_path):
    for key in SECRET_ENV:
        environment.delenv(key)
    environment.setenv("LINLI_DEMO", "1")
    first, second = start("requests"), start("requests")
    assert len(first.config["SECRET_KEY"]) >= 32 and first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert first.config["REQUESTS_TOKEN"] == start("volunteers").config["REQUESTS_TOKEN"]
    environment.setenv("LINLI_SECRET_KEY", "change-me-secret")
    with pytest.raises(ConfigError, match="LINLI_SECRET_KEY"):
        start("requests")


def test_the_demo_reachable_from_other_machines_needs_real_secrets(environment):
    for key in SECRET_ENV:
        environment.delenv(key)
    environment.setenv("LINLI_DEMO", "1")
    environment.setenv("LINLI_BIND", "0.0.0.0")
    with pytest.raises(ConfigError, match="LINLI_SECRET_KEY is not set"):
        start("requests")


def test_an_operators_environment_outranks_dotenv(tmp_path):
    """make run starts everything through deploy/with_env.py (honcho alone lets .env win)."""
    (tmp_path / ".env").write_text("LINLI_DEMO=1\nLINLI_ADMIN_TOKEN=from-dotenv\nLINLI_ONLY_IN_FILE=file\n")
    env = {**os.environ, "LINLI_DEMO": "0", "LINLI_ADMIN_TOKEN": "from-the-operator"}
    env.pop("LINLI_ONLY_IN_FILE", None)
    out = subprocess.run([sys.executable, str(ROOT / "deploy" / "with_env.py"), sys.executable, "-c",
                          "import os; print(os.environ['LINLI_DEMO'], os.environ['LINLI_ADMIN_TOKEN'],"
                          " os.environ['LINLI_ONLY_IN_FILE'])"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "from-the-operator", "file"]
    makefile = (ROOT / "Makefile").read_text()
    assert "$(WITH_ENV) $(BIN)/honcho start -e /dev/null" in makefile  # honcho reads no .env of its own
    assert "run: export LINLI_DEMO ?= 1" in makefile  # make run is the demo, unless the operator says otherwise


def test_make_env_writes_no_placeholder(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "deploy" / "make_env.py"), str(ROOT / ".env.example"),
                    str(tmp_path / ".env")], check=True)
    text = (tmp_path / ".env").read_text()
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert not [key for key, value in values.items() if "change-me" in value]
    for key, _ in settings.SECRETS.values():
        assert settings.secret_problem(key, values[key]) is None


# --- logs, bodies, database errors ---


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_the_access_log_names_the_route_never_the_token(make_app):
    app = make_app("requests")
    client = app.test_client()
    code = client.post("/api/v1/requests", json=RESIDENT).json["tracking_code"]
    # The services put their own JSON handler on the root logger; listen beside it.
    seen = Records()
    logging.getLogger().addHandler(seen)
    try:
        client.get(f"/track/{code}")
        client.get(f"/api/v1/requests/{code}")
        client.get("/no/such/page/SECRET123")
    finally:
        logging.getLogger().removeHandler(seen)
    routes = [r.route for r in seen.records if r.name == "linli.http" and hasattr(r, "route")]
    assert routes == ["/track/<code>", "/api/v1/requests/<code>", "(no route)"]
    formatter = logging.getLogger().handlers[0].formatter
    text = "\n".join(formatter.format(r) for r in seen.records)
    assert code not in text and "SECRET123" not in text


def test_request_bodies_are_bounded(make_app):
    app = make_app("requests")
    big = {**RESIDENT, "description": "x" * 300_000}
    resp = app.test_client().post("/api/v1/requests", json=big)
    assert resp.status_code == 413
    resp = app.test_client().post("/", data={**RESIDENT, "description": "x" * 300_000})
    assert resp.status_code == 413


@pytest.mark.parametrize("body", [[None, None], [], "text", 42, None, [RESIDENT]])
def test_json_that_is_not_an_object_gets_a_clear_error_and_changes_nothing(make_app, body):
    """Schemathesis found `[null, null]` answering 500."""
    from services.requests.models import ServiceRequest

    app = make_app("requests")
    resp = app.test_client().post("/api/v1/requests", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json["errors"]["json"]
    with app.app_context():
        assert app.extensions["db"].Session.query(ServiceRequest).count() == 0


def test_a_failed_statement_carries_no_values(make_app):
    from services.requests.models import StaffMember

    app = make_app("requests")
    with app.app_context():
        session = app.extensions["db"].Session
        session.add(StaffMember(username="dup", display_name="王建国 13812341234", role="admin",
                                password_hash="x", session_epoch=1, active=True))
        session.commit()
        session.add(StaffMember(username="dup", display_name="李秀英 13987654321", role="admin",
                                password_hash="x", session_epoch=1, active=True))
        with pytest.raises(IntegrityError) as failed:
            session.commit()
        session.rollback()
    assert "13987654321" not in str(failed.value) and "李秀英" not in str(failed.value)


# --- spreadsheets ---


@pytest.mark.parametrize("fmt", tables.FORMATS)
def test_exported_cells_never_start_a_formula(fmt):
    typed = ["=HYPERLINK(\"http://evil.example\",\"点我\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "普通文字"]
    data = tables.table(["name", *["c"] * 5], [typed, [1, -5, 2.5, "", "ok", "a=b"]], fmt)
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    else:
        rows = [[("" if v is None else v) for v in row]
                for row in load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True)]
    assert rows[1][:5] == ["'" + v for v in typed[:5]] and rows[1][5] == "普通文字"
    # Numbers stay numbers (negative ones too); text that merely contains "=" stays as typed.
    expected = ["1", "-5", "2.5", "", "ok", "a=b"] if fmt == "csv" else [1, -5, 2.5, "", "ok", "a=b"]
    assert rows[2] == expected


# --- HTTPS ---


def test_https_deployments_get_secure_cookies_and_hsts_by_default(environment):
    environment.setenv("LINLI_REQUESTS_URL", "https://linli.example.org")
    app = start("requests")
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.test_client().get("/", base_url="https://linli.example.org").headers[
        "Strict-Transport-Security"].startswith("max-age=")
    assert "Strict-Transport-Security" not in app.test_client().get("/").headers  # plain HTTP: never
    environment.setenv("LINLI_SECURE_COOKIES", "0")  # the operator's explicit word wins
    assert start("requests").config["SESSION_COOKIE_SECURE"] is False


def test_plain_http_on_loopback_keeps_ordinary_cookies(environment):
    app = start("requests")
    assert app.config["SESSION_COOKIE_SECURE"] is False and app.config["HSTS"] is False


# --- rate limits ---


def limits(**overrides):
    return {**settings.RATE_LIMITS, **overrides}


def test_the_request_form_and_api_share_a_limit_per_address(make_app, unit_redis):
    app = make_app("requests", RATE_LIMITS=limits(request_form="3 per hour"))
    client = app.test_client()
    here = {"REMOTE_ADDR": "10.3.3.3"}
    assert client.post("/api/v1/requests", json=RESIDENT, environ_base=here).status_code == 201
    assert client.post("/api/v1/requests", json=RESIDENT, environ_base=here).status_code == 201
    form = client.get("/", environ_base=here).text
    from tests.conftest import csrf_token

    ok = client.post("/", data={**RESIDENT, "consent": "y", "csrf_token": csrf_token(form)}, environ_base=here)
    assert ok.status_code == 303
    api = client.post("/api/v1/requests", json=RESIDENT, environ_base=here)
    assert api.status_code == 429 and api.json["code"] == 429  # JSON for API clients
    page = client.post("/", data={**RESIDENT, "consent": "y", "csrf_token": csrf_token(form)}, environ_base=here)
    assert page.status_code == 429 and "社区办公室" in page.text  # the page says whom to call, in Chinese
    english = client.post("/?lang=en", data={**RESIDENT, "consent": "y", "csrf_token": csrf_token(form)},
                          environ_base=here)
    assert english.status_code == 429 and "community office" in english.text
    # Another address is not held back; reading is never limited.
    assert client.post("/api/v1/requests", json=RESIDENT, environ_base={"REMOTE_ADDR": "10.3.3.4"}).status_code == 201
    assert client.get("/", environ_base=here).status_code == 200
    # Counted in Redis (every web worker shares it), keyed without the address.
    keys = b" ".join(unit_redis.keys("*ratelimit*"))
    assert keys and b"10.3.3.3" not in keys


def test_the_limiter_fails_open_when_redis_is_down(make_app):
    app = make_app("requests", RATE_LIMITS=limits(request_form="1 per hour"), REDIS_URL="redis://127.0.0.1:1/0")
    client = app.test_client()
    seen = Records()
    logging.getLogger().addHandler(seen)
    try:
        answers = [client.post("/api/v1/requests", json=RESIDENT).status_code for _ in range(3)]
    finally:
        logging.getLogger().removeHandler(seen)
    assert answers == [201, 201, 201]  # residents are still heard
    assert any("rate limit" in r.getMessage().lower() for r in seen.records)  # and it is logged


# --- lists come in pages ---


def test_list_endpoints_answer_a_page_at_a_time(make_app):
    import json

    from tests.conftest import ADMIN_TOKEN

    app = make_app("requests")
    client = app.test_client()
    for _ in range(3):
        assert client.post("/api/v1/requests", json=RESIDENT).status_code == 201
    staff = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    first = client.get("/api/v1/staff/requests?page_size=2", headers=staff)
    second = client.get("/api/v1/staff/requests?page_size=2&page=2", headers=staff)
    assert len(first.json) == 2 and len(second.json) == 1
    assert json.loads(first.headers["X-Pagination"])["total"] == 3
    assert {r["tracking_code"] for r in first.json + second.json} == {
        r["tracking_code"] for r in client.get("/api/v1/staff/requests", headers=staff).json}
    # The page size is bounded: nobody asks for everything at once.
    assert client.get("/api/v1/staff/requests?page_size=100000", headers=staff).status_code == 422


def test_sign_in_links_are_limited_per_phone_and_per_address(make_app, unit_redis):
    from tests.conftest import csrf_token

    app = make_app("volunteers", RATE_LIMITS=limits(magic_link_phone="2 per hour", magic_link_address="3 per hour"))

    def ask(phone, addr):
        client = app.test_client()
        page = client.get("/login", environ_base={"REMOTE_ADDR": addr})
        return client.post("/login", data={"phone": phone, "csrf_token": csrf_token(page.text)},
                           environ_base={"REMOTE_ADDR": addr}).status_code

    # One phone, asked for from three addresses: the third is refused.
    assert [ask("13900000001", f"10.4.0.{n}") for n in range(3)] == [200, 200, 429]
    # One address walking through phone numbers: the fourth is refused.
    assert [ask(f"1390000001{n}", "10.4.1.1") for n in range(4)] == [200, 200, 200, 429]
    keys = b" ".join(unit_redis.keys("*ratelimit*"))
    assert b"13900000001" not in keys and b"10.4.1.1" not in keys


def test_production_refuses_to_start_while_demo_data_can_sign_in(make_app, tmp_path):
    from services.common.factory import check_before_serving

    demo_staff = make_app("requests", DEMO=True, DEMO_STAFF_PASSWORD="demo-password-for-the-test")
    demo_vols = make_app("volunteers", DEMO=True)
    for demo in (demo_staff, demo_vols):
        production = importlib.import_module(demo.import_name).create_app({
            "DATABASE_URL": demo.config["DATABASE_URL"], "REDIS_URL": demo.config["REDIS_URL"],
            "DEMO": False, **{k: demo.config[k] for k in settings.SECRETS}})
        with pytest.raises(ConfigError, match="demo"):
            check_before_serving(production)
        refused = production.test_cli_runner().invoke(args=["init-db"])
        assert refused.exit_code != 0 and "remove-demo" in refused.output
        removed = production.test_cli_runner().invoke(args=["remove-demo"])
        assert removed.exit_code == 0, removed.output
        check_before_serving(production)  # nothing left that can sign in: it starts
        assert production.test_cli_runner().invoke(args=["init-db"]).exit_code == 0
    # The demo staff cannot sign in any more.
    from tests.conftest import csrf_token

    client = demo_staff.test_client()
    page = client.get("/staff/login")
    resp = client.post("/staff/login", data={"username": "office", "password": "demo-password-for-the-test",
                                             "csrf_token": csrf_token(page.text)})
    assert resp.status_code == 401


def test_gunicorn_and_the_workers_check_before_serving():
    conf = (ROOT / "deploy" / "gunicorn.conf.py").read_text()
    assert "def post_worker_init(worker):" in conf and "check_before_serving(worker.wsgi)" in conf
    for service in SERVICES:
        assert "check_before_serving(flask_app)" in (ROOT / "services" / service / "worker.py").read_text()


def test_open311_posts_are_limited_per_key(make_app):
    app = make_app("requests", RATE_LIMITS=limits(open311_post="2 per hour"), OPEN311_API_KEYS="partner-desk-one,two")
    client = app.test_client()

    def post(key, fmt="json"):
        return client.post(f"/open311/v2/requests.{fmt}", data={
            "api_key": key, "service_code": "haircut", "address_id": "3-1-302", "first_name": "秀英",
            "last_name": "王", "phone": "13812345678", "description": "理发"})

    assert [post("partner-desk-one").status_code for _ in range(2)] == [200, 200]
    refused = post("partner-desk-one")
    assert refused.status_code == 429 and refused.json[0]["code"] == 429  # GeoReport's error shape
    assert b"<errors>" in post("partner-desk-one", "xml").data
    assert post("two").status_code == 200  # another key has its own budget


def test_only_the_roster_upload_takes_a_larger_body(make_app):
    """The volunteers service allows a roster file, not 5 MB of anonymous JSON elsewhere."""
    from tests.conftest import ADMIN_TOKEN

    app = make_app("volunteers")
    client = app.test_client()
    big = {"phone": "1" * 400_000}
    assert client.post("/login", data=big).status_code == 413
    assert client.post("/api/v1/volunteers", json={"name": "x" * 400_000},
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 413
    rows = "".join(f"{'王' * 20}{n},139{n:08d},3,1,haircut,{'x' * 20}\n" for n in range(4000))
    roster = io.BytesIO(("name,phone,building,unit,skills,note\n" + rows).encode())
    assert 256 * 1024 < len(roster.getvalue()) < 5_000_000  # over the usual bound, under the roster's
    resp = client.post("/api/v1/volunteers/import", data={"file": (roster, "roster.csv")},
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, content_type="multipart/form-data")
    assert resp.status_code != 413  # read and judged by its rows (5000 at most), not refused for its size


def test_an_unhandled_error_is_logged_by_its_route_not_its_path(make_app):
    app = make_app("volunteers")

    def boom(token):
        raise RuntimeError("broken")

    app.add_url_rule("/boom/<token>", "boom", boom)
    app.testing = False  # let Flask log it as in production, instead of raising into the test
    app.config["PROPAGATE_EXCEPTIONS"] = False
    seen = Records()
    logging.getLogger().addHandler(seen)
    try:
        assert app.test_client().get("/boom/SECRET-TOKEN-42").status_code == 500
    finally:
        logging.getLogger().removeHandler(seen)
    formatter = logging.getLogger().handlers[0].formatter
    text = "\n".join(formatter.format(r) for r in seen.records)
    assert "/boom/<token>" in text and "SECRET-TOKEN-42" not in text


@pytest.mark.parametrize("service, variable, value, says", [
    ("requests", "LINLI_RETENTION_DAYS", "half a year", "whole number"),
    ("requests", "LINLI_TIMERS", '["parking"]', "JSON object"),
    ("requests", "LINLI_TIMERS", "{parking: 20}", "JSON object"),
    ("volunteers", "LINLI_DISPATCH_POLICIES", "broadcast", "JSON object"),
    ("volunteers", "LINLI_ROSTER_MAX_ROWS", "-1", "at least 0"),
    ("notify", "LINLI_CHANNEL_TIMEOUT", "ten", "seconds"),
    ("notify", "LINLI_DELIVERY_LEASE_SECONDS", "0", "more than 0"),
    ("notify", "LINLI_TASK_TIME_LIMIT", "2m", "whole number"),
    ("requests", "LINLI_HTTP_TIMEOUT", "", None),  # empty is the default, not an error
    ("volunteers", "LINLI_PUBLISH_IN_BACKGROUND", "maybe", "1 or 0"),
    ("notify", "LINLI_NOTIFY_PORT", "eighty", "whole number"),
])
def test_a_bad_setting_stops_start_up_naming_the_variable(environment, service, variable, value, says):
    environment.setenv(variable, value)
    if says is None:
        assert start(service).config["HTTP_TIMEOUT"] == 3.0
        return
    with pytest.raises(ConfigError) as refused:
        start(service)
    assert variable in str(refused.value) and says in str(refused.value)


def test_settings_are_read_in_one_place_at_start_up(environment):
    """Only services.common.settings reads the environment, and a service's
    settings are read when it starts: changing a variable afterwards changes
    nothing in the running app."""
    readers = subprocess.run(["grep", "-rlE", r"os\.environ|getenv\(", "services"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert [path for path in readers if path.endswith(".py")] == ["services/common/settings.py"]
    environment.setenv("LINLI_CHANNEL_TIMEOUT", "4")
    app = start("notify")
    environment.setenv("LINLI_CHANNEL_TIMEOUT", "40")
    assert app.config["CHANNEL_TIMEOUT"] == 4.0


def test_a_rate_limit_that_is_not_a_limit_refuses_to_start(environment):
    environment.setenv("LINLI_RATE_LIMITS", '{"request_form": "2 per fortnight"}')
    with pytest.raises(ConfigError, match="request_form"):
        start("requests")


def test_phone_digests_follow_a_new_key_at_the_next_start(make_app):
    """A volunteer must never be offered their own request, also after the
    digest key changes (it once fell back to the session key)."""
    from services.common import contract
    from services.volunteers.models import Volunteer
    from tests.conftest import ADMIN_TOKEN

    app = make_app("volunteers")
    created = app.test_client().post("/api/v1/volunteers", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, json={
        "name": "王建国", "phone": "13900001111", "building": "3", "unit": "1", "skills": ["haircut"]})
    assert created.status_code == 201
    renewed = importlib.import_module("services.volunteers").create_app({
        **{k: app.config[k] for k in ("DATABASE_URL", "REDIS_URL", *settings.SECRETS)}, "DEMO": False,
        "PHONE_DIGEST_KEY": "a-new-phone-digest-key-of-forty-characters"})
    result = renewed.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0 and "1 phone digests renewed" in result.output
    with renewed.app_context():
        vol = renewed.extensions["db"].Session.get(Volunteer, created.json["id"])
        assert vol.phone_digest == contract.phone_digest("13900001111", "a-new-phone-digest-key-of-forty-characters")


@pytest.mark.parametrize("service, revision, model", [
    ("requests", "8ab0c1eb1a92", "StaffMember"), ("volunteers", "4c85f8c331cd", "Volunteer")])
def test_demo_data_seeded_before_the_marker_is_marked_by_the_migration(make_app, service, revision, model):
    """The demo used to be the default: a deployment upgraded from then must
    not pass for clean. A real account that merely shares a name stays unmarked."""
    from alembic import command
    from sqlalchemy import func, select, update

    module = importlib.import_module(f"services.{service}")
    models = importlib.import_module(f"services.{service}.models")
    table = getattr(models, model)
    app = make_app(service, DEMO=True, DEMO_STAFF_PASSWORD="demo-password-for-the-test")
    db = app.extensions["db"]
    with app.app_context():
        if service == "requests":
            from services.requests import staff

            staff.create(db.Session, "zhou", "a-long-password-1", "admin", "社区办公室")  # a real one, same name
        db.Session.execute(update(table).values(demo=False))  # as before the marker existed
        db.Session.commit()
        demo_before = db.Session.scalar(select(func.count()).select_from(table))
        cfg = db.alembic_config(module.VERSIONS, models.Base.metadata)
        command.downgrade(cfg, revision)
        db.Session.remove()
        command.upgrade(cfg, "head")
        marked = db.Session.scalar(select(func.count()).select_from(table).where(table.demo.is_(True)))
        db.Session.remove()
    assert marked == (3 if service == "requests" else demo_before)
    production = module.create_app({"DATABASE_URL": app.config["DATABASE_URL"], "REDIS_URL": app.config["REDIS_URL"],
                                    "DEMO": False, **{k: app.config[k] for k in settings.SECRETS}})
    from services.common.factory import check_before_serving

    with pytest.raises(ConfigError, match="demo"):
        check_before_serving(production)


def test_published_events_are_forgotten_after_a_day(make_app):
    """Outbox rows carry residents' words and links that are keys: once
    published and a day old, the relay deletes them."""
    from datetime import timedelta

    from sqlalchemy import select, update

    from services.common.clock import utcnow
    from services.requests.models import OutboxMessage

    app = make_app("requests")
    client = app.test_client()
    client.post("/api/v1/requests", json=RESIDENT)
    client.post("/api/v1/requests", json=RESIDENT)
    db, outbox = app.extensions["db"], app.extensions["outbox"]
    with app.app_context():
        old, new = db.Session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.created_at)).all()[:2]
        db.Session.execute(update(OutboxMessage).where(OutboxMessage.id == old)
                           .values(published_at=utcnow() - timedelta(days=2)))
        db.Session.execute(update(OutboxMessage).where(OutboxMessage.id == new).values(published_at=utcnow()))
        db.Session.commit()
        db.Session.remove()
        outbox.relay()
        left = set(db.Session.scalars(select(OutboxMessage.id)).all())
        db.Session.remove()
    assert old not in left and new in left
