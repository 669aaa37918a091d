"""make chaos: nothing lost, nothing doubled, under faults.

Starts the whole system as real processes (tests.system, the Procfile's
commands) on a Redis server of its own (so that stopping and freezing it
harms nothing else), submits N uniquely identified requests at a steady rate
through the HTTP API while a fault injector with a fixed seed kills worker
processes (children and main, restarted as compose would), stops and
restarts Redis, freezes it (SIGSTOP … SIGCONT), and makes the volunteers'
webhook fail for a while. Scripted volunteers accept their offers. Then the
faults stop, the system drains, and the checks run, Jepsen-style:

- every accepted request exists and reached a settled state;
- lost = 0; duplicate offers to one volunteer for one request = 0; duplicate
  deliveries per dedupe key = 0; volunteers over capacity = 0; requests with
  two live assignments = 0;
- every submit answered within 5 s (none hung), and the share that succeeded
  during each fault.

    python -m tests.chaos --n 2000 [--rate 10] [--backend postgresql] [--seed 7]

prints a table and writes bench/results/chaos.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

from tests.conftest import csrf_token
from tests.receivers import WebhookReceiver, free_port, wait_for
from tests.system import System

ROOT = Path(__file__).resolve().parents[1]
SETTLED = {"assigned", "in_progress", "completed", "closed", "escalated"}
SUBMIT_TIMEOUT = 5.0
WORKERS = ("requests-worker", "volunteers-worker", "notify-worker")
CATEGORIES = ["haircut"] * 3 + ["bicycle_repair"] * 3 + ["umbrella_repair"] * 2 + ["alterations", "parking"]


class OwnRedis:
    """A redis-server for this run only, with an append-only file so that a
    stop and restart keeps the queues (as compose's Redis does)."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.dir), "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                                        text=True).stdout.strip() == "PONG", timeout=10, what="redis")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def worker_main(system: System, name: str) -> int | None:
    """The celery main process of a worker (the Popen is its shell)."""
    shell = system.procs[name].pid
    for pid in [shell, *children_of(shell)]:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"celery" in cmd and b"worker" in cmd:
            return pid
    return None


class ScriptedVolunteers(threading.Thread):
    """Reads each offer that reaches a volunteer's webhook and accepts it
    through the offer page, as a person would."""

    def __init__(self, hook: WebhookReceiver):
        super().__init__(daemon=True)
        self.hook = hook
        self.seen: set[str] = set()
        self.stop_event = threading.Event()
        self.accepted = Counter()

    def run(self):
        done = 0  # receipts already looked at
        with ThreadPoolExecutor(max_workers=8) as people:  # several volunteers answer at once
            while not self.stop_event.is_set():
                received = self.hook.received[done:]
                done += len(received)
                for r in received:
                    if r["status"] != 200:
                        continue  # the channel "failed": the volunteer never saw it
                    message = r["body"]["message"] if isinstance(r["body"], dict) else ""
                    match = re.search(r"(http://127\.0\.0\.1:\d+/offers/[\w-]+)", message)
                    if match and match.group(1) not in self.seen:
                        self.seen.add(match.group(1))
                        people.submit(self.accept, match.group(1))
                time.sleep(0.2)

    def accept(self, link: str) -> None:
        for _ in range(3):
            try:
                session = requests.Session()
                page = session.get(link, timeout=5)
                if 'value="accept"' in page.text:
                    answer = session.post(link, timeout=5,
                                          data={"decision": "accept", "csrf_token": csrf_token(page.text)})
                    outcome = re.search(r"outcome=(\w+)", answer.url)
                    self.accepted[outcome.group(1) if outcome else "unknown"] += 1
                return
            except requests.RequestException:
                time.sleep(1)  # a fault is on: try again


class Faults(threading.Thread):
    """Injects faults on a seeded schedule and records when each happened."""

    def __init__(self, system: System, redis_server: OwnRedis, hook: WebhookReceiver, seed: int, duration: float,
                 kinds: list[str]):
        super().__init__(daemon=True)
        self.system, self.redis, self.hook = system, redis_server, hook
        self.rng = random.Random(seed)
        self.duration = duration
        self.kinds = kinds
        self.windows: list[dict] = []

    def run(self):
        start = time.monotonic()
        time.sleep(2)
        while time.monotonic() - start < self.duration:
            kind = self.rng.choice(self.kinds)
            began = time.monotonic()
            getattr(self, kind)()
            self.windows.append({"fault": kind, "start": began, "end": time.monotonic()})
            time.sleep(self.rng.uniform(1.5, 4.0))

    def kill_worker_child(self):
        main = worker_main(self.system, self.rng.choice(WORKERS))
        kids = children_of(main) if main else []
        if kids:
            os.kill(self.rng.choice(kids), signal.SIGKILL)  # the main forks a new one
        time.sleep(1)

    def kill_worker_main(self):
        name = self.rng.choice(WORKERS)
        self.system.kill(name)
        time.sleep(self.rng.uniform(0.5, 2.0))
        self.system.restart(name)

    def restart_redis(self):
        self.redis.stop()
        time.sleep(self.rng.uniform(1.0, 3.0))
        self.redis.start()

    def freeze_redis(self):
        self.redis.freeze()
        time.sleep(self.rng.uniform(2.0, 5.0))
        self.redis.thaw()

    def failing_channel(self):
        self.hook.status = 500
        time.sleep(self.rng.uniform(3.0, 6.0))
        self.hook.status = 200


def submit_all(url: str, n: int, rate: float, seed: int) -> list[dict]:
    """Open loop at a fixed rate: each submit has its planned time, and its
    latency counts from then (no coordinated omission)."""
    rng = random.Random(seed)
    results: list[dict] = [None] * n
    start = time.monotonic()

    def one(i, planned):
        category = rng.choice(CATEGORIES)
        body = {"category": category, "description": f"chaos-{i}", "building": str(1 + i % 69), "unit": "1",
                "room": "101", "contact_name": "测试", "contact_phone": "13812341234", "consent": True,
                "mode": "station" if category == "alterations" else "home"}
        delay = planned - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            resp = requests.post(f"{url}/api/v1/requests", json=body, timeout=SUBMIT_TIMEOUT)
            ok = resp.status_code == 201
            code = resp.json().get("tracking_code") if ok else None
            error = None if ok else f"HTTP {resp.status_code}"
        except requests.Timeout:
            ok, code, error = False, None, "hung"
        except requests.RequestException as exc:
            ok, code, error = False, None, type(exc).__name__
        results[i] = {"i": i, "planned": planned, "latency": time.monotonic() - planned, "ok": ok, "code": code,
                      "error": error}

    threads = []
    for i in range(n):
        t = threading.Thread(target=one, args=(i, start + i / rate), daemon=True)
        t.start()
        threads.append(t)
        time.sleep(max(0.0, start + i / rate - time.monotonic() - 0.05))
    for t in threads:
        t.join(timeout=SUBMIT_TIMEOUT + 30)
    return [r for r in results if r]


def invariants(system: System) -> dict:
    """Read the services' databases directly: the checker is not a service."""
    url = {s: system.env.get(f"LINLI_{s.upper()}_DATABASE_URL") or
           f"sqlite:///{system.env['LINLI_DATA_DIR']}/{s}.db" for s in ("volunteers", "notify")}
    with create_engine(url["volunteers"]).connect() as conn:
        dup_offers = conn.execute(text(
            "SELECT count(*) FROM (SELECT request_id, volunteer_id FROM offer GROUP BY request_id, volunteer_id "
            "HAVING count(*) > 1) d")).scalar()
        over_capacity = conn.execute(text("SELECT count(*) FROM volunteer WHERE active_tasks > capacity")).scalar()
        two_assignments = conn.execute(text(
            "SELECT count(*) FROM (SELECT request_id FROM assignment WHERE status <> 'cancelled' "
            "GROUP BY request_id HAVING count(*) > 1) d")).scalar()
        dead_volunteers = conn.execute(text("SELECT count(*) FROM dead_message")).scalar()
    with create_engine(url["notify"]).connect() as conn:
        dup_deliveries = conn.execute(text(
            "SELECT count(*) FROM (SELECT notification_id FROM delivery GROUP BY notification_id "
            "HAVING count(*) > 1) d")).scalar()
        dup_notifications = conn.execute(text(
            "SELECT count(*) FROM (SELECT dedupe_key FROM notification GROUP BY dedupe_key HAVING count(*) > 1) d"
        )).scalar()
    return {"duplicate_offers": dup_offers, "volunteers_over_capacity": over_capacity,
            "requests_with_two_assignments": two_assignments, "duplicate_deliveries": dup_deliveries,
            "duplicate_notifications": dup_notifications, "dead_messages_matching": dead_volunteers}


def run(n: int = 200, rate: float = 10.0, seed: int = 7, backend: str = "sqlite", workdir: Path | None = None,
        kinds: list[str] | None = None, drain_timeout: float = 240.0) -> dict:
    kinds = kinds or ["kill_worker_child", "kill_worker_main", "restart_redis", "freeze_redis", "failing_channel"]
    workdir = workdir or Path(tempfile.mkdtemp(prefix="linli-chaos-"))
    own_redis = OwnRedis(workdir)
    own_redis.start()
    from services.common.community import load as load_community
    from services.common.settings import base_config
    community = json.loads(json.dumps(load_community(base_config("requests")["COMMUNITY_FILE"])))
    report: dict = {"n": n, "rate": rate, "seed": seed, "backend": backend, "faults": kinds,
                    "load_generator": "same machine"}
    with WebhookReceiver() as hook:
        env = {
            # Redelivery of a killed worker's task after 30 s, not 10 min; offers answered in 12 s.
            "LINLI_VISIBILITY_TIMEOUT": "30", "LINLI_TASK_TIME_LIMIT": "20",
            "LINLI_DELIVERY_LEASE_SECONDS": "10",
            # A volunteers.request_submitted lost by the broker is sent again after 20 s, not 2 min.
            "LINLI_RESEND_AFTER_SECONDS": "20",
            "LINLI_DISPATCH_DEFAULT": json.dumps({"offer_minutes": 0.2}),
        }
        system = System(workdir, backend, own_redis.url, community, env)
        try:
            system.start()
            staff = system.admin()
            skills = ["haircut", "bicycle_repair", "umbrella_repair", "alterations"]
            # Enough volunteers (10 tasks each) for every home visit of the run.
            for i in range(max(24, n // 8)):
                volunteer = {"name": f"志愿者{i}", "phone": f"137000{i:05d}", "building": str(1 + (i * 3) % 69),
                             "skills": [skills[i % 4], skills[(i + 1) % 4]], "capacity": 10,
                             "channels": [hook.url(f"/v/{i}")]}
                resp = requests.post(f"{system.urls['volunteers']}/api/v1/volunteers", headers=staff, timeout=10,
                                     json=volunteer)
                assert resp.status_code == 201, resp.text
            station = requests.post(f"{system.urls['volunteers']}/api/v1/stations", headers=staff, timeout=10,
                                    json={"code": "chaos", "name": "翠邻里服务站", "place": "12幢"}).json()["id"]
            for day in range(7):
                requests.post(f"{system.urls['volunteers']}/api/v1/stations/{station}/sessions", headers=staff,
                              timeout=10, json={"category": "alterations", "weekday": day, "start": "08:00",
                                                "end": "20:00", "volunteer_id": 1, "slots": 100})
            bots = ScriptedVolunteers(hook)
            bots.start()
            duration = n / rate
            faults = Faults(system, own_redis, hook, seed, duration, kinds)
            faults.start()
            started = time.monotonic()
            submits = submit_all(system.urls["requests"], n, rate, seed)
            faults.join(timeout=120)
            own_redis.thaw()
            hook.status = 200
            for name in WORKERS + ("requests", "volunteers", "notify", "community", "beat"):
                if system.procs[name].poll() is not None:
                    system.restart(name)
            accepted = [s for s in submits if s["ok"]]
            pending = list(accepted)

            def unsettled():
                # Only those not yet settled are asked again: a settled request stays settled
                # (the final statuses are read once more below).
                waiting = []
                for s in pending:
                    try:
                        status = requests.get(f"{system.urls['requests']}/api/v1/requests/{s['code']}",
                                              timeout=5).json()["status"]
                    except (requests.RequestException, ValueError, KeyError):
                        status = "unknown"
                    if status not in SETTLED:
                        waiting.append((s["code"], status))
                still = {code for code, _ in waiting}
                pending[:] = [s for s in pending if s["code"] in still]
                return waiting

            drain_start = time.monotonic()
            while True:
                left = unsettled()
                if not left or time.monotonic() - drain_start > drain_timeout:
                    break
                time.sleep(3)
            report["drain_seconds"] = round(time.monotonic() - drain_start, 1)
            bots.stop_event.set()
            statuses = Counter()
            for s in accepted:
                statuses[requests.get(f"{system.urls['requests']}/api/v1/requests/{s['code']}",
                                      timeout=5).json()["status"]] += 1
            # Repeats the receiver took (answered 200) — a 500 is no delivery.
            receipts = Counter(r["headers"].get("X-Linli-Dedupe-Key") for r in hook.received if r["status"] == 200)
            latencies = sorted(s["latency"] for s in submits)
            report.update({
                "submitted": len(submits), "accepted": len(accepted),
                "refused": Counter(s["error"] for s in submits if not s["ok"]),
                "hung": sum(1 for s in submits if s["error"] == "hung"),
                "latency_p50_s": round(latencies[len(latencies) // 2], 3),
                "latency_p99_s": round(latencies[int(len(latencies) * 0.99) - 1], 3),
                "latency_max_s": round(latencies[-1], 3),
                "lost": sum(1 for s in accepted if s["code"] is None) + len(left),
                "unsettled": left[:20], "statuses": dict(statuses),
                "webhook_repeats": sum(1 for k, c in receipts.items() if k and c > 1),
                "offers_accepted_by_bots": dict(bots.accepted),
                "run_seconds": round(time.monotonic() - started, 1),
                **invariants(system),
            })
            per_fault = {}
            for w in faults.windows:
                inside = [s for s in submits if w["start"] - started <= s["planned"] - started <= w["end"] - started]
                f = per_fault.setdefault(w["fault"], {"times": 0, "submits": 0, "ok": 0})
                f["times"] += 1
                f["submits"] += len(inside)
                f["ok"] += sum(1 for s in inside if s["ok"])
            for f in per_fault.values():
                f["success_rate"] = round(f["ok"] / f["submits"], 3) if f["submits"] else None
            report["per_fault"] = per_fault
            report["refused"] = dict(report["refused"])
        finally:
            system.stop()
            own_redis.stop()
    return report


def print_report(report: dict) -> None:
    print(f"chaos: {report['n']} requests at {report['rate']}/s, seed {report['seed']}, {report['backend']}, "
          f"load generator on the same machine")
    rows = [("submitted", report["submitted"]), ("accepted (201)", report["accepted"]),
            ("refused", report["refused"]), ("hung (> 5 s)", report["hung"]),
            ("latency p50 / p99 / max (s)", f"{report['latency_p50_s']} / {report['latency_p99_s']} / "
                                            f"{report['latency_max_s']}"),
            ("lost", report["lost"]), ("statuses after drain", report["statuses"]),
            ("drain (s)", report["drain_seconds"]),
            ("duplicate offers (volunteer, request)", report["duplicate_offers"]),
            ("duplicate deliveries per dedupe key", report["duplicate_deliveries"]),
            ("duplicate notifications", report["duplicate_notifications"]),
            ("volunteers over capacity", report["volunteers_over_capacity"]),
            ("requests with two assignments", report["requests_with_two_assignments"]),
            ("webhook repeats (same dedupe key, at-least-once)", report["webhook_repeats"])]
    for name, value in rows:
        print(f"  {name:<48} {value}")
    print("  per fault (submits planned during it → succeeded):")
    for kind, f in report["per_fault"].items():
        print(f"    {kind:<22} ×{f['times']:<3} {f['ok']}/{f['submits']}  ({f['success_rate']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    report = run(args.n, args.rate, args.seed, args.backend, drain_timeout=600)
    print_report(report)
    out = ROOT / "bench" / "results" / f"chaos-{args.backend}-{args.n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str))
    print(f"written to {out}")
    bad = (report["lost"] or report["hung"] or report["duplicate_offers"] or report["duplicate_deliveries"]
           or report["volunteers_over_capacity"] or report["requests_with_two_assignments"])
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
