"""What each step of one request costs, in-process, one at a time:
intake's POST, matching's reception and first offer (600 volunteers),
notify's send with its webhook delivery, intake's status change. Time and
SQL statements per request; `--profile` prints cProfile's top entries.
The figures behind the README's Operations section.

    python -m bench.stages [--n 300] [--profile]
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import tempfile
import time
import uuid

from sqlalchemy import event

SKILLS = ("haircut", "alterations", "appliance_repair", "sharpening", "umbrella_repair", "bicycle_repair")
RESIDENT = {"category": "haircut", "description": "理发", "building": "3", "unit": "1", "room": "302",
            "contact_name": "张", "contact_phone": "13812341234", "consent": True}


def app_of(module, tmp: str):
    app = module.create_app({"DATABASE_URL": f"sqlite:///{tmp}/{module.__name__.rsplit('.', 1)[1]}.db",
                             "DEMO": False})
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    return app


def measure(app, name: str, steps: list, profile: bool) -> dict:
    """Run each step (a callable) once, in ten rounds; the figure is the
    median round's mean (a shared VM's noise swings single runs by 20 %)."""
    statements = [0]

    def count(*args, **kwargs):
        statements[0] += 1

    event.listen(app.extensions["db"].engine, "before_cursor_execute", count)
    profiler = cProfile.Profile()
    rounds = [steps[i::10] for i in range(10)]
    means = []
    with profiler if profile else contextlib.nullcontext():
        for chunk in rounds:
            started = time.perf_counter()
            for step in chunk:
                step()
            means.append((time.perf_counter() - started) / len(chunk))
    event.remove(app.extensions["db"].engine, "before_cursor_execute", count)
    result = {"step": name, "ms_per_request": round(statistics.median(means) * 1000, 2),
              "sql_per_request": round(statements[0] / len(steps), 1)}
    if profile:
        out = io.StringIO()
        order, top = os.environ.get("SORT", "cumulative"), int(os.environ.get("TOP", "25"))
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(top)
        result["profile"] = out.getvalue()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="linli-stages-")
    os.environ["LINLI_DATA_DIR"] = tmp
    os.environ.setdefault("LINLI_REDIS_URL", "redis://127.0.0.1:6379/11")  # the events go nowhere else
    from bench.run import BENCH_RATE_LIMITS

    os.environ.setdefault("LINLI_RATE_LIMITS", BENCH_RATE_LIMITS)  # as make bench: 300 POSTs from one address
    import secrets

    from services.common.settings import SECRETS

    for variable, _ in SECRETS.values():  # production settings, with secrets of this run's own
        os.environ.setdefault(variable, secrets.token_urlsafe(32))

    from bench.run import roster_csv
    from services import notify, requests, volunteers
    from services.common import contract
    from services.common import extensions as ext
    from services.notify.tasks import send
    from services.requests.tasks import status_changed
    from services.volunteers import roster
    from services.volunteers.tasks import dispatcher
    from tests.receivers import WebhookReceiver

    results = []
    intake = app_of(requests, tmp)
    client = intake.test_client()
    for _ in range(20):
        client.post("/api/v1/requests", json=RESIDENT)
    ids = []
    results.append(measure(intake, "intake POST /api/v1/requests", [
        lambda: ids.append(client.post("/api/v1/requests", json=RESIDENT).json["id"])] * args.n, args.profile))
    with intake.app_context():
        changes = [contract.envelope(contract.STATUS_CHANGED, {"request_id": i, "status": "offered",
                                                               "actor": "matching", "note": ""}, source="volunteers")
                   for i in ids]
        results.append(measure(intake, "intake requests.status_changed",
                               [lambda m=m: status_changed.apply(args=[m]).get() for m in changes], args.profile))

    with WebhookReceiver() as hook:
        matching = app_of(volunteers, tmp)
        with matching.test_request_context():
            roster.import_roster(ext.db_session(), roster.read_rows("roster.csv", roster_csv(600, hook).encode()),
                                 matching.config["PHONE_DIGEST_KEY"], partial=False)
            ext.db_session().commit()

        def receive(i):
            data = {"request_id": str(uuid.uuid4()), "category": SKILLS[i % 6], "summary": "x",
                    "building": str(1 + i % 69), "unit": "1", "masked_phone": "138****1234", "mode": "home",
                    "window_start": None, "window_end": None, "urgency": "normal"}
            db = matching.extensions["db"]
            session = db.Session()
            dispatcher(session).receive(contract.RequestSubmitted().load(data))
            session.commit()
            db.Session.remove()

        with matching.app_context():
            for i in range(20):
                receive(i)
            results.append(measure(matching, "matching volunteers.request_submitted (600 volunteers)",
                                   [lambda i=i: receive(i) for i in range(args.n)], args.profile))

        sender = app_of(notify, tmp)
        with sender.app_context():
            def message(i):
                return contract.envelope(contract.NOTIFY_SEND, {
                    "dedupe_key": f"offer:{uuid.uuid4()}", "recipient": f"volunteer:{i % 100 + 1}",
                    "channels": [hook.url(f"/v{i % 100}")], "language": "zh-CN", "template": "offer",
                    "urgent": True, "reply_to": "volunteers", "context": {
                        "category": "haircut", "building": "3幢", "masked_phone": "138****1234", "summary": "理发",
                        "window_start": "", "window_end": "", "offer_url": "http://x/offers/t"}},
                    source="volunteers")
            for i in range(20):
                send.apply(args=[message(i)]).get()
            messages = [message(i) for i in range(args.n)]
            results.append(measure(sender, "notify notify.send with webhook delivery",
                                   [lambda m=m: send.apply(args=[m]).get() for m in messages], args.profile))

    print(f"{'step':<58} {'ms/request':>10} {'SQL/request':>12}")
    for r in results:
        print(f"{r['step']:<58} {r['ms_per_request']:>10} {r['sql_per_request']:>12}")
        if args.profile:
            print(r["profile"])
    total = sum(r["ms_per_request"] for r in results)
    print(f"{'sum (one status change counted)':<58} {round(total, 1):>10}")


if __name__ == "__main__":
    main()
