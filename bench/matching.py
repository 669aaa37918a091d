"""make bench-matching: the matching worker on a real database.

Prints figures and writes bench/results/matching.json; asserts nothing
about time (speed goals are read by people, not by the test suite).

match_path: the product path — the consumer of volunteers.request_submitted
from the message received to its first offer committed to the outbox and
published, on SQLite or PostgreSQL holding 1,000, 10,000 and 50,000
volunteers spread over the demo community (p50, p99, the worker's CPU p50,
SQL statements per request).

    python -m bench.matching [--postgresql] [--sizes 1000,10000] [--requests 200]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from datetime import time as dtime
from pathlib import Path

from services.common.clock import SHANGHAI
from services.common.contract import CATEGORY_BY_CODE, VOLUNTEER_SKILLS

NOW = datetime(2026, 11, 27, 2, tzinfo=timezone.utc)
OUT = Path(__file__).with_name("results") / "matching.json"


def pct(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the product path: the matching worker on a real database ---

PG_ADMIN_URL = os.environ.get("LINLI_BENCH_PG_URL", os.environ.get("LINLI_TEST_PG_URL",
                                                                    "postgresql://postgres@127.0.0.1:5432/test"))
# The offers and status changes the worker publishes go to a Redis database
# of the benchmark's own (nobody consumes them; their queues are emptied after).
REDIS_URL = os.environ.get("LINLI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
REQUEST_CATEGORIES = tuple(s for s in VOLUNTEER_SKILLS if not CATEGORY_BY_CODE[s].programme)
WINDOWS = ((dtime(9), dtime(11)), (dtime(14), dtime(17)), (dtime(18, 30), dtime(20, 30)), (dtime(8), dtime(12)))
REQUEST_HOURS = (9, 10, 14, 15, 19)


def _database(backend: str, tmp: str, name: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp}/{name}.db"
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"


def _drop(backend: str, name: str) -> None:
    if backend == "postgresql":
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _matching_app(url: str, redis_url: str):
    """Matching as its worker runs it (production settings, secrets of this
    run's own), migrated and seeded by its own `init-db`."""
    import secrets as random_secrets

    from services import volunteers

    keys = ("SECRET_KEY", "ADMIN_TOKEN", "PHONE_DIGEST_KEY", "REQUESTS_TOKEN", "VOLUNTEERS_TOKEN", "REGISTER_KEY")
    app = volunteers.create_app({"DATABASE_URL": url, "REDIS_URL": redis_url, "DEMO": False,
                                 **{k: random_secrets.token_urlsafe(32) for k in keys}})
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    return app


def roster(session, n: int, rng: random.Random) -> None:
    """N volunteers spread over the community's buildings and stairwells, in
    bulk: one to three skills (the credentialed ones mostly verified), room
    for one to three tasks with a few taken, one in twenty inactive, most
    with weekly windows, some with days off in the coming fortnight."""
    from sqlalchemy import insert, select

    from services.volunteers.models import AvailabilityWindow, Building, DayOff, Volunteer, VolunteerSkill

    homes = [(b.code, unit) for b in session.scalars(select(Building)) for unit in b.units]
    vols, skills, windows, days_off = [], [], [], []
    today = NOW.astimezone(SHANGHAI).date()
    for vid in range(1, n + 1):
        building, unit = rng.choice(homes)
        capacity = rng.choice((1, 1, 2, 3))
        offers = rng.randrange(20)
        rated = rng.randrange(5)
        vols.append({
            "id": vid, "name": f"志愿者{vid}", "display_name": f"志愿者{vid}", "phone": f"1{vid:010d}",
            "building": building, "unit": unit, "capacity": capacity,
            "active_tasks": 0 if rng.random() < 0.7 else rng.randrange(capacity + 1),
            "active": rng.random() > 0.05, "channels": [f"json://127.0.0.1:9/v/{vid}"], "language": "zh-CN",
            "teams": [], "phone_digest": f"{rng.getrandbits(256):064x}",
            "last_task_at": NOW - timedelta(days=rng.randrange(60)) if rng.random() > 0.3 else None,
            "offers_count": offers, "accepts_count": rng.randrange(offers + 1), "rating_sum": rated * 4,
            "rating_count": rated, "created_at": NOW, "session_epoch": 0, "demo": False,
        })
        for code in rng.sample(VOLUNTEER_SKILLS, rng.choice((1, 1, 2, 3))):
            verified = CATEGORY_BY_CODE[code].credential and rng.random() < 0.8
            skills.append({"volunteer_id": vid, "category": code, "verified": verified})
        if rng.random() < 0.6:
            for weekday in rng.sample(range(7), rng.choice((1, 2, 3))):
                start, end = rng.choice(WINDOWS)
                windows.append({"volunteer_id": vid, "weekday": weekday, "start_time": start, "end_time": end})
        if rng.random() < 0.1:
            for offset in rng.sample(range(14), rng.choice((1, 2, 3))):
                days_off.append({"volunteer_id": vid, "day": today + timedelta(days=offset)})
    session.execute(insert(Volunteer), vols)
    session.execute(insert(VolunteerSkill), skills)
    session.execute(insert(AvailabilityWindow), windows)
    session.execute(insert(DayOff), days_off)
    session.commit()
    if session.bind.dialect.name == "postgresql":
        # What autovacuum does a minute after a bulk load: the planner's figures.
        with session.bind.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def request_messages(count: int, homes: list[tuple[str, str]], rng: random.Random) -> list[dict]:
    """volunteers.request_submitted as intake sends them: every service
    volunteers offer, all over the community, half of them with a time
    window in the coming week, some urgent or for someone over 80."""
    from services.common import contract

    out = []
    for _ in range(count):
        building, unit = rng.choice(homes)
        start = end = None
        if rng.random() < 0.5:
            day = NOW.astimezone(SHANGHAI).date() + timedelta(days=rng.randrange(7))
            start = datetime.combine(day, dtime(rng.choice(REQUEST_HOURS)), SHANGHAI)
            end = start + timedelta(hours=2)
        out.append(contract.envelope(contract.REQUEST_SUBMITTED, {
            "request_id": str(uuid.uuid4()), "category": rng.choice(REQUEST_CATEGORIES), "summary": "需要帮忙",
            "building": building, "unit": unit, "masked_phone": "138****1234", "mode": "home",
            "window_start": start, "window_end": end, "urgency": "urgent" if rng.random() < 0.1 else "normal",
            "elderly": rng.random() < 0.25, "disability": rng.random() < 0.05,
            "requester_digest": f"{rng.getrandbits(256):064x}", "programme_ref": None,
            "preferred_volunteer_id": None, "first_to": None}, source="requests"))
    return out


def match_path(backend: str = "sqlite", sizes=(1_000, 10_000, 50_000), requests_per_size: int = 200,
               redis_url: str = REDIS_URL, profile=None) -> dict:
    """The matching worker's own code, per number of volunteers in its
    database: from a request received (the consumer's task body, with its
    message as intake sends it) to the commit that puts its offer in the
    outbox and the after-commit publish of it. p50/p99 in ms and SQL
    statements per request (mean), and how the requests ended.

    `profile`, if given, is a context manager entered around the timed
    requests of each size (e.g. a profiler)."""
    from sqlalchemy import event, func, select

    from services.volunteers.models import Building, Escalation, Offer, ServiceRequest
    from services.volunteers.tasks import request_submitted

    tmp = tempfile.mkdtemp(prefix="linli-bench-matching-")
    results = {}
    statements = [0]

    def count(*args):
        statements[0] += 1

    for n in sizes:
        name = f"linli_bench_matching_{n}_{uuid.uuid4().hex[:6]}"
        app = _matching_app(_database(backend, tmp, name), redis_url)
        db = app.extensions["db"]
        try:
            rng = random.Random(n)
            with app.app_context():
                session = db.Session()
                roster(session, n, rng)
                homes = [(b.code, u) for b in session.scalars(select(Building)) for u in b.units]
                db.Session.remove()
            messages = request_messages(requests_per_size + 20, homes, rng)
            for message in messages[:20]:  # warm: compiled statements, connections
                request_submitted(message)
            statements[0] = 0
            samples, cpu = [], []
            event.listen(db.engine, "before_cursor_execute", count)
            with profile() if profile else contextlib.nullcontext():
                for message in messages[20:]:
                    started, started_cpu = time.perf_counter(), time.thread_time()
                    outcome = request_submitted(message)
                    samples.append((time.perf_counter() - started) * 1000)
                    cpu.append((time.thread_time() - started_cpu) * 1000)
                    assert outcome == "done", outcome
            event.remove(db.engine, "before_cursor_execute", count)
            with app.app_context():
                session = db.Session()
                ids = [m["data"]["request_id"] for m in messages[20:]]
                offered = session.scalar(select(func.count(func.distinct(Offer.request_id)))
                                         .where(Offer.request_id.in_(ids)))
                escalated = session.scalar(select(func.count(func.distinct(Escalation.request_id)))
                                           .where(Escalation.request_id.in_(ids)))
                waiting = session.scalar(select(func.count()).select_from(ServiceRequest)
                                         .where(ServiceRequest.id.in_(ids), ServiceRequest.status == "matching"))
                db.Session.remove()
            results[str(n)] = {"p50_ms": round(pct(samples, 0.5), 2), "p99_ms": round(pct(samples, 0.99), 2),
                               # The worker's own CPU (a shared machine's wall clock waits for cores too).
                               "cpu_p50_ms": round(pct(cpu, 0.5), 2),
                               "sql_statements": round(statements[0] / len(samples), 1),
                               "requests": len(samples), "offered": offered, "escalated": escalated,
                               "waiting": waiting}
        finally:
            db.engine.dispose()
            _drop(backend, name)
            _empty_queues(redis_url)
    return results


def _empty_queues(redis_url: str) -> None:
    import redis

    from services.common import contract

    client = redis.Redis.from_url(redis_url)
    client.delete(*{contract.queue_for(t) for t in (contract.NOTIFY_SEND, contract.STATUS_CHANGED)})
    client.close()


def print_path(backend: str, figures: dict) -> None:
    print(f"matching worker, request received → first offer in the outbox, {backend} "
          "(goals: p50 ≤ 10 ms at 10,000 volunteers, ≤ 2× from 1,000 to 50,000)")
    print(f"{'volunteers':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU p50':>8} {'SQL':>6} {'offered':>8} {'escalated':>10} "
          f"{'waiting':>8}")
    for n, r in figures.items():
        print(f"{int(n):>10,} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['cpu_p50_ms']:>8} {r['sql_statements']:>6} "
              f"{r['offered']:>8} "
              f"{r['escalated']:>10} {r['waiting']:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgresql", action="store_true", help="PostgreSQL too (LINLI_BENCH_PG_URL)")
    parser.add_argument("--sizes", default="1000,10000,50000", help="volunteers in the database, comma-separated")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per size")
    parser.add_argument("--profile", metavar="FILE", help="write a pyinstrument profile of the timed requests")
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    results = {"machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
               "match_path": {}}
    for backend in ("sqlite", "postgresql") if args.postgresql else ("sqlite",):
        results["match_path"][backend] = match_path(backend, sizes, args.requests)
        print_path(backend, results["match_path"][backend])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
