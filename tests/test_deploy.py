"""The deployment files: docker-compose.yml validated by Debian's
docker-compose (no engine needed) and checked for structure; the Procfile
that `make run` starts runs the very same commands; every command's
module imports; the Dockerfile builds one image for all."""
from __future__ import annotations

import importlib
import os
import re
import runpy
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from celery import Celery

from tests.conftest import SECRET_ENV
from tests.system import procfile

ROOT = Path(__file__).resolve().parents[1]
LINLI_PROCESSES = {"requests", "volunteers", "notify", "community", "requests-worker", "volunteers-worker",
                   "notify-worker", "community-worker", "beat"}


@pytest.fixture(scope="module")
def compose(tmp_path_factory):
    """`docker-compose config` of a copy of the repository with a .env made
    from .env.example, as an operator would have it."""
    work = tmp_path_factory.mktemp("compose")
    for name in ("docker-compose.yml", "Dockerfile", ".env.example"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(ROOT / "deploy", work / "deploy")
    shutil.copy(ROOT / ".env.example", work / ".env")
    check = subprocess.run(["docker-compose", "config", "-q"], cwd=work, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    out = subprocess.run(["docker-compose", "config"], cwd=work, capture_output=True, text=True, check=True)
    return yaml.safe_load(out.stdout)


def test_compose_rejects_an_unknown_key(tmp_path):
    """The validator really validates (so the check above means something)."""
    text = (ROOT / "docker-compose.yml").read_text().replace("  redis:\n    image: redis:7\n",
                                                               "  redis:\n    image: redis:7\n    colour: blue\n", 1)
    (tmp_path / "docker-compose.yml").write_text(text)
    (tmp_path / ".env").write_text("POSTGRES_PASSWORD=a-long-random-password-for-the-validator\n")
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    result = subprocess.run(["docker-compose", "config", "-q"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0 and "colour" in result.stderr


def test_compose_has_no_fallback_database_password(tmp_path):
    """Without POSTGRES_PASSWORD compose refuses, instead of a password everyone knows."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text("")
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    result = subprocess.run(["docker-compose", "config", "-q"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr


def test_compose_has_every_process_with_healthchecks_and_ordering(compose):
    services = compose["services"]
    assert set(services) == LINLI_PROCESSES | {"redis", "postgres", "init"}
    for name, svc in services.items():
        if name != "init":
            assert "healthcheck" in svc, f"{name} has no healthcheck"
    for name in LINLI_PROCESSES:
        deps = services[name]["depends_on"]
        assert deps["init"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["postgres"]["condition"] == "service_healthy"
        assert services[name]["image"] == "linli:latest"  # one image for all
    assert services["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    redis_cmd = " ".join(argv(services["redis"]["command"]))
    assert "--appendonly yes" in redis_cmd and "--maxmemory-policy noeviction" in redis_cmd
    init_sql = (ROOT / "deploy" / "postgres-init.sql").read_text()
    for db in ("linli_requests", "linli_volunteers", "linli_notify"):
        assert f"CREATE DATABASE {db};" in init_sql
        assert any(db in v for v in services["requests"]["environment"].values())
    for worker in ("requests-worker", "volunteers-worker", "notify-worker"):
        assert "inspect ping" in " ".join(services[worker]["healthcheck"]["test"])


def argv(command) -> list[str]:
    """Compose keeps a command as written (string or list); compare argv."""
    return shlex.split(command) if isinstance(command, str) else list(command)


def interpolate(command: str) -> str:
    """${VAR:-default} as both the shell (honcho) and compose resolve it."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1)) or m.group(2), command)


def test_procfile_and_compose_start_the_same_commands(compose):
    procs = procfile()
    assert set(procs) == LINLI_PROCESSES
    for name, command in procs.items():
        assert argv(compose["services"][name]["command"]) == shlex.split(interpolate(command)), name
    assert argv(compose["services"]["init"]["command"]) == ["sh", "deploy/init-all.sh"]
    assert "deploy/init-all.sh" in (ROOT / "Makefile").read_text()


def test_every_command_names_something_that_imports(monkeypatch, tmp_path):
    monkeypatch.setenv("LINLI_DATA_DIR", str(tmp_path))
    for key, value in SECRET_ENV.items():
        monkeypatch.setenv(key, value)
    for name, command in procfile().items():
        argv = shlex.split(interpolate(command))
        if argv[0] == "gunicorn":
            module, call = argv[-1].split(":")
            factory = getattr(importlib.import_module(module), call.removesuffix("()"))
            assert callable(factory), name
        else:
            assert argv[0] == "celery" and argv[1] == "-A"
            module, attr = argv[2].split(":")
            app = getattr(importlib.import_module(module), attr)
            assert isinstance(app, Celery), name
            if "-Q" in argv:
                queue = argv[argv.index("-Q") + 1]
                assert name == f"{queue}-worker"
                assert any(t.startswith(f"{queue}.") for t in app.tasks), f"{name} registers no {queue} task"


@pytest.mark.parametrize("service, port", [("requests", 8001), ("volunteers", 8002), ("notify", 8003),
                                           ("community", 8004)])
def test_gunicorn_binds_each_service_to_its_port(monkeypatch, service, port):
    monkeypatch.setattr("sys.argv", ["gunicorn", "-c", "deploy/gunicorn.conf.py", f"services.{service}:create_app()"])
    monkeypatch.delenv("LINLI_BIND", raising=False)
    conf = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    assert conf["bind"] == f"127.0.0.1:{port}"
    monkeypatch.setenv("LINLI_BIND", "0.0.0.0")
    monkeypatch.setenv(f"LINLI_{service.upper()}_PORT", "9999")
    assert runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))["bind"] == "0.0.0.0:9999"


def test_web_processes_publish_in_the_background_unless_the_operator_says_otherwise(monkeypatch):
    monkeypatch.delenv("LINLI_PUBLISH_IN_BACKGROUND", raising=False)
    conf = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    assert conf["raw_env"] == ["LINLI_PUBLISH_IN_BACKGROUND=1"]
    assert "LINLI_PUBLISH_IN_BACKGROUND" not in os.environ  # reading the config changes nothing here
    monkeypatch.setenv("LINLI_PUBLISH_IN_BACKGROUND", "0")
    assert runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))["raw_env"] == []


def test_dockerfile_builds_one_image_that_runs_as_a_user():
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("FROM python:3.11")
    text = "\n".join(lines)
    for needed in ("COPY services ./services", "COPY data ./data", "COPY deploy ./deploy", "pip install -e .",
                   "pybabel compile", "LINLI_BIND=0.0.0.0", "USER linli"):
        assert needed in text, needed
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored


def test_env_example_names_every_secret_compose_needs():
    example = (ROOT / ".env.example").read_text()
    for key in ("LINLI_ADMIN_TOKEN", "LINLI_REQUESTS_TOKEN", "LINLI_VOLUNTEERS_TOKEN", "LINLI_SECRET_KEY",
                "LINLI_PHONE_DIGEST_KEY", "POSTGRES_PASSWORD"):
        assert f"{key}=change-me" in example
