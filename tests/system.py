"""Runs the whole of Linli as real processes, exactly as `make run` does:
`deploy/init-all.sh`, then every command of the Procfile (gunicorn web
services, Celery workers, beat) on free ports, against the real Redis and
a SQLite or PostgreSQL database each."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from services.common.settings import RATE_LIMITS
from tests.conftest import ADMIN_TOKEN, SECRET_ENV, create_pg_database, drop_pg_database
from tests.receivers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("requests", "volunteers", "notify", "community")


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


class System:
    def __init__(self, workdir: Path, backend: str, redis_url: str, community: dict, env: dict | None = None):
        self.workdir = workdir
        self.backend = backend
        self.redis_url = redis_url
        self.logdir = workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        community_file = workdir / "community.json"
        community_file.write_text(json.dumps(community, ensure_ascii=False))
        self.ports = {s: free_port() for s in SERVICES}
        self.urls = {s: f"http://127.0.0.1:{p}" for s, p in self.ports.items()}
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "LINLI_DATA_DIR": str(workdir / "data"),
            "LINLI_REDIS_URL": redis_url,
            **SECRET_ENV,
            "LINLI_DEMO": "0",
            "LINLI_COMMUNITY_FILE": str(community_file),
            "LINLI_WEB_WORKERS": "2",
            # Nothing waits for the morning: these tests run at any hour
            # (quiet hours are tested with a controlled clock in test_notify).
            "LINLI_QUIET_HOURS": "00:00-00:00",
            "FLASK_SKIP_DOTENV": "1",
            # The tests and the benchmark drive the system from one address,
            # as a load generator, not as residents: the limits are tested in
            # tests/test_security.py and are lifted here (README, Operations).
            "LINLI_RATE_LIMITS": json.dumps({name: "1000000 per minute" for name in RATE_LIMITS}),
            **(env or {}),
        }
        self.databases = []
        for s in SERVICES:
            self.env[f"LINLI_{s.upper()}_PORT"] = str(self.ports[s])
            self.env[f"LINLI_{s.upper()}_URL"] = self.urls[s]
            if backend == "postgresql":
                name = f"linli_it_{s}_{os.getpid()}"
                self.env[f"LINLI_{s.upper()}_DATABASE_URL"] = create_pg_database(name)
                self.databases.append(name)
        self.procs: dict[str, subprocess.Popen] = {}

    # --- lifecycle ---

    def start(self) -> "System":
        init = subprocess.run(["sh", "deploy/init-all.sh"], cwd=ROOT, env=self.env, capture_output=True, text=True)
        assert init.returncode == 0, init.stdout + init.stderr
        for name, command in procfile().items():
            self.procs[name] = subprocess.Popen(
                command, shell=True, cwd=ROOT, env=self.env, start_new_session=True,
                stdout=open(self.logdir / f"{name}.log", "wb"), stderr=subprocess.STDOUT,
            )
        for s in SERVICES:
            wait_for(lambda s=s: self._ready(s), timeout=60, what=f"{s} /readyz")
        for s in SERVICES:
            wait_for(lambda s=s: f"{s}@" in self.log(f"{s}-worker") and " ready." in self.log(f"{s}-worker"),
                     timeout=60, what=f"{s} worker ready")
        return self

    def _ready(self, service: str) -> bool:
        self._check_alive()
        try:
            return requests.get(f"{self.urls[service]}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for name in self.databases:
            drop_pg_database(name)

    def kill(self, name: str) -> None:
        """kill -9 a process and its children, as a crash would."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def restart(self, name: str) -> None:
        """Start a process again with its Procfile command, as compose would."""
        self.procs[name] = subprocess.Popen(
            procfile()[name], shell=True, cwd=ROOT, env=self.env, start_new_session=True,
            stdout=open(self.logdir / f"{name}.log", "ab"), stderr=subprocess.STDOUT,
        )

    # --- looking at it ---

    def log(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def all_logs(self) -> str:
        return "\n".join(self.log(name) for name in procfile())

    def admin(self) -> dict:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def tracking(self, code: str) -> dict:
        return requests.get(f"{self.urls['requests']}/api/v1/requests/{code}", timeout=5).json()

    def wait_status(self, code: str, status: str, timeout: float = 30) -> dict:
        return wait_for(lambda: (t := self.tracking(code))["status"] == status and t, timeout=timeout,
                        what=f"request {code} to be {status}")


def extract(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not found"
    return match.group(1)
