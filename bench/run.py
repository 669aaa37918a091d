"""make bench: the whole path against its own limits, measured in one run.

Starts Linli as real processes (tests.system: the Procfile's gunicorn web
services, Celery workers and beat) on its own Redis database, with the load
generator on the same machine, and measures open-loop at fixed rates
(coordinated-omission-safe: each request is timed from its planned send
time):

1. intake: POST /api/v1/requests at saturation (closed loop) and p50/p99 at
   50, 100 and 200 requests/s;
2. end to end: from a submit's planned send time to the first offer at a
   local webhook (the planned time travels in the message), at 50 and 100/s;
3. baselines in the same run: a bare Flask JSON echo under the same gunicorn
   settings, and a bare three-hop Celery chain on the same Redis;
4. the ratios; queue depth during 60 s sustained at 100/s; peak RSS per
   process; the same end to end with 1 and 2 worker processes per queue;
5. the matching worker's p50 on 1k/10k/50k volunteers (bench.matching.match_path);
6. what bounds all of it: CPU milliseconds per request in each process
   (submit to first offer delivered, well below saturation), and intake's
   saturation with the workers paused (the web tier alone).

Writes bench/results/latest.json (intake_ratio, e2e_p50_ratio,
e2e_p99_ratio, match_path_p50_ms, …), a Markdown report
with a latency plot (PNG), and prints a summary. Asserts nothing about time.

    python -m bench.run [--backend sqlite|postgresql] [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import requests

from bench import matching
from services.common import contract
from tests.receivers import WebhookReceiver, free_port, wait_for
from tests.system import ROOT, System

RESULTS = ROOT / "bench" / "results"
REDIS_DB = "redis://127.0.0.1:6379/13"
SKILLS = ("haircut", "alterations", "appliance_repair", "sharpening", "umbrella_repair", "bicycle_repair")
_local = threading.local()


def session() -> requests.Session:
    if not hasattr(_local, "s"):
        _local.s = requests.Session()
    return _local.s


def pct(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(value):
    return None if value is None else round(value * 1000, 1)


def open_loop(send, rate: float, duration: float, threads: int = 48) -> dict:
    """Send at `rate`/s for `duration` s; latency counts from the planned time."""
    n = int(rate * duration)
    start = time.time() + 0.5
    latencies, errors = [], 0
    lock = threading.Lock()

    def one(i):
        nonlocal errors
        planned = start + i / rate
        delay = planned - time.time()
        if delay > 0:
            time.sleep(delay)
        ok = send(i, planned)
        with lock:
            latencies.append(time.time() - planned)
            errors += 0 if ok else 1

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(n)))
    return {"rate": rate, "n": n, "errors": errors, "p50_ms": ms(pct(latencies, 0.5)),
            "p99_ms": ms(pct(latencies, 0.99)), "max_ms": ms(max(latencies))}


def closed_loop(send, clients: int, duration: float) -> float:
    """Requests per second with `clients` senders back to back."""
    stop = time.time() + duration
    done = []

    def client(_):
        count = 0
        while time.time() < stop:
            if send(count, time.time()):
                count += 1
        done.append(count)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client, range(clients)))
    return round(sum(done) / duration, 1)


def request_body(i: int, planned: float, category: str | None = None) -> dict:
    # The planned time travels in the message (the offer's short form shows
    # the start of the description).
    return {"category": category or SKILLS[i % len(SKILLS)], "description": f"p={planned:.3f}",
            "building": str(1 + i % 69), "unit": "1", "room": "101", "contact_name": "测试",
            "contact_phone": "13812341234", "consent": True}


def post_json(url: str, category: str | None = None):
    def send(i, planned):
        try:
            return session().post(url, json=request_body(i, planned, category), timeout=10).status_code == 201
        except requests.RequestException:
            return False
    return send


# --- the baselines ---


def gunicorn_echo(env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(["gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                             "bench.echo:app"], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/echo"
    wait_for(lambda: _up(url), timeout=30, what="echo server")
    return proc, url


def _up(url):
    try:
        return requests.post(url, json={}, timeout=1).status_code == 201
    except requests.RequestException:
        return False


def chain_baseline(env: dict, rate: float, duration: float) -> dict:
    chain_env = {**env, "LINLI_REDIS_URL": REDIS_DB}
    client = redis.Redis.from_url(REDIS_DB)
    client.flushdb()
    procs = [subprocess.Popen(["celery", "-A", "bench.chain:app", "worker", "-Q", q, "-n", f"{q}@%h", "--concurrency",
                               "2", "--loglevel", "WARNING"], cwd=ROOT, env=chain_env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for q in ("hop1", "hop2", "hop3")]
    try:
        from bench.chain import app as chain_app
        key = "bench:chain"
        chain_app.send_task("hop1", args=[time.time(), "bench:warmup"], queue="hop1")
        wait_for(lambda: client.llen("bench:warmup") > 0, timeout=60, what="the chain's workers")

        def send(i, planned):
            chain_app.send_task("hop1", args=[planned, key], queue="hop1")
            return True

        run = open_loop(send, rate, duration, threads=8)
        wait_for(lambda: client.llen(key) >= run["n"], timeout=60, what="every chain to arrive")
        latencies = [float(b) - float(a) for a, b in (x.decode().split() for x in client.lrange(key, 0, -1))]
        return {"rate": rate, "n": run["n"], "p50_ms": ms(pct(latencies, 0.5)), "p99_ms": ms(pct(latencies, 0.99))}
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)


# --- the system ---


def roster_csv(volunteers: int, hook: WebhookReceiver) -> str:
    lines = ["name,phone,building,unit,skills,capacity,channels"]
    for i in range(volunteers):
        skills = f"{SKILLS[i % len(SKILLS)]} {SKILLS[(i + 3) % len(SKILLS)]}"
        lines.append(f"志愿者{i},136{i:08d},{1 + i % 69},1,{skills},10,{hook.url(f'/v/{i}')}")
    return "\n".join(lines) + "\n"


def start_system(workdir: Path, backend: str, hook: WebhookReceiver, concurrency: int) -> System:
    from services.common.community import load as load_community
    from services.common.settings import base_config
    community = json.loads(json.dumps(load_community(base_config("requests")["COMMUNITY_FILE"])))
    # Offers keep their usual 30 minutes: nobody answers in the benchmark,
    # and 600 volunteers with two services each and room for 10 tasks hold
    # 2,000 places per service, more than a whole run offers. (Offers that
    # expired after 30 s, as before, re-offered every early request during
    # the sustained run: half as much work again, and none of it a request's.)
    env = {"LINLI_WORKER_CONCURRENCY": str(concurrency)}
    redis.Redis.from_url(REDIS_DB).flushdb()
    system = System(workdir, backend, REDIS_DB, community, env).start()
    roster = roster_csv(600, hook).encode("utf-8")
    resp = requests.post(f"{system.urls['volunteers']}/api/v1/volunteers/import", headers=system.admin(),
                         files={"file": ("roster.csv", roster)}, timeout=120)
    assert resp.status_code == 200 and resp.json()["imported"] == 600, resp.text[:500]
    return system


PLANNED = re.compile(r"p=(\d+\.\d+)")


def drained(timeout: float = 300) -> float:
    """Wait until the service queues are empty (what earlier runs left behind);
    returns how long that took."""
    client, start = redis.Redis.from_url(REDIS_DB), time.time()
    while time.time() - start < timeout and any(client.llen(q) for q in contract.QUEUES):
        time.sleep(1)
    return round(time.time() - start, 1)


def e2e(system: System, hook: WebhookReceiver, rate: float, duration: float) -> dict:
    """Submit → first offer at the webhook, timed from the submit's planned time."""
    waited = drained()
    hook.received.clear()
    send = post_json(f"{system.urls['requests']}/api/v1/requests")
    window_start = time.time()
    run = open_loop(send, rate, duration)
    window_end = time.time()
    expected = run["n"] - run["errors"]

    def firsts():
        found = {}
        for r in list(hook.received):
            match = PLANNED.search(r["body"].get("message", "") if isinstance(r["body"], dict) else "")
            if match and window_start <= float(match.group(1)) <= window_end:
                found.setdefault(match.group(1), r["at"])
        return found

    deadline = time.time() + 120
    while len(firsts()) < expected and time.time() < deadline:
        time.sleep(1)
    latencies = [at - float(planned) for planned, at in firsts().items()]
    return {"rate": rate, "n": run["n"], "submit_errors": run["errors"], "arrived": len(latencies),
            "p50_ms": ms(pct(latencies, 0.5)), "p99_ms": ms(pct(latencies, 0.99)), "drained_before_s": waited}


WORKERS = ("requests-worker", "volunteers-worker", "notify-worker")


@contextlib.contextmanager
def workers_paused(system: System):
    """Stop the Celery workers (SIGSTOP) for a while: the web tier alone on
    the cores, as in the first minutes of a burst, while Redis holds the events."""
    for name in WORKERS:
        os.killpg(system.procs[name].pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for name in WORKERS:
            os.killpg(system.procs[name].pid, signal.SIGCONT)


def queue_depths(stop: threading.Event, samples: list):
    client = redis.Redis.from_url(REDIS_DB)
    while not stop.is_set():
        samples.append({q: client.llen(q) for q in contract.QUEUES})
        time.sleep(1)


def group_pids(proc) -> set[int]:
    """A started process and everything in its process group (gunicorn's
    and Celery's children)."""
    return {proc.pid} | {int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == proc.pid}


def peak_rss(system: System) -> dict:
    """Peak resident memory (VmHWM) of each process, in MiB."""
    out = {}
    for name, proc in system.procs.items():
        peaks = []
        for pid in group_pids(proc):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                peaks.append(int(match.group(1)) / 1024)
        out[name] = round(max(peaks), 1) if peaks else None
    return out


def cpu_seconds(system: System) -> dict:
    """CPU time (user + system) used so far by each process and its children."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, proc in system.procs.items():
        total = 0
        for pid in group_pids(proc):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        out[name] = total / tick
    return out


def cpu_per_request(system: System, hook: WebhookReceiver, rate: float = 20, n: int = 400) -> dict:
    """CPU milliseconds each process spends per request, from submit to the
    first offer's delivery, at a rate well below saturation: how many
    requests per second the cores can carry, and where they go."""
    drained()
    hook.received.clear()
    before, machine, generator = cpu_seconds(system), machine_busy(), sum(os.times()[:2])
    run = open_loop(post_json(f"{system.urls['requests']}/api/v1/requests"), rate, n / rate)
    wait_for(lambda: len(hook.received) >= run["n"] - run["errors"], timeout=120, what="the offers")
    drained()
    time.sleep(2)  # the status changes after the last offer
    after = cpu_seconds(system)
    machine, generator = machine_busy() - machine, sum(os.times()[:2]) - generator

    def per_request(seconds):
        return round(seconds / run["n"] * 1000, 2)

    per = {name: per_request(after[name] - before[name]) for name in after}
    total = sum(per.values())
    # The rest of the machine's busy time: Redis, PostgreSQL, the kernel.
    other = max(0.0, per_request(machine - generator) - total)
    return {"rate": rate, "n": run["n"], "ms_by_process": per, "ms_total": round(total, 1),
            "ms_redis_database_os": round(other, 1), "ms_load_generator_and_receiver": per_request(generator),
            "cores": os.cpu_count(),
            "capacity_rps": round(os.cpu_count() * 1000 / (total + other), 1) if total else None}


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    user, nice, system_, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system_ + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    intake = report["intake"]["open_loop"]
    ax.plot([r["rate"] for r in intake], [r["p50_ms"] for r in intake], "o-", label="intake p50")
    ax.plot([r["rate"] for r in intake], [r["p99_ms"] for r in intake], "o--", label="intake p99")
    for r in report["e2e"]["runs"]:
        ax.plot([r["rate"]], [r["p50_ms"]], "s", color="tab:green")
        ax.plot([r["rate"]], [r["p99_ms"]], "s", color="tab:red")
    ax.plot([], [], "s", color="tab:green", label="end to end p50")
    ax.plot([], [], "s", color="tab:red", label="end to end p99")
    ax.axhline(report["baselines"]["chain"]["p50_ms"], color="grey", linestyle=":", label="bare chain p50")
    ax.set_xlabel("requests/s (open loop)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title(f"Linli on {report['machine']}, {report['backend']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(report: dict) -> str:
    r = report
    lines = [f"# Linli benchmark ({r['backend']})", "", f"Machine: {r['machine']}; load generator on the same machine.",
             "", "| measure | value |", "|---|---|",
             f"| bare echo saturation | {r['baselines']['echo_rps']} req/s |",
             f"| intake saturation, whole system running | {r['intake']['saturation_rps']} req/s |",
             f"| intake ÷ echo | {r['intake_ratio']} (goal ≥ 0.5) |",
             f"| intake saturation, workers paused (a burst's first minutes) | {r['intake']['alone_rps']} req/s, "
             f"÷ echo {r['intake_alone_ratio']} |",
             f"| CPU per request, submit to first offer delivered (at {r['cpu']['rate']}/s) | "
             f"{r['cpu']['ms_total']} ms: " + ", ".join(f"{k} {v}" for k, v in r['cpu']['ms_by_process'].items() if v)
             + f"; Redis, database and kernel {r['cpu']['ms_redis_database_os']} ms → {r['cpu']['cores']} cores "
             f"carry ~{r['cpu']['capacity_rps']} req/s (load generator and webhook receiver "
             f"{r['cpu']['ms_load_generator_and_receiver']} ms more) |"]
    for run in r["intake"]["open_loop"]:
        lines.append(f"| intake at {run['rate']}/s | p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
                     f"{run['errors']} errors |")
    chain = r["baselines"]["chain"]
    lines.append(f"| bare 3-hop chain at {chain['rate']}/s | p50 {chain['p50_ms']} ms, p99 {chain['p99_ms']} ms |")
    for run in r["e2e"]["runs"]:
        lines.append(f"| end to end at {run['rate']}/s | p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
                     f"{run['arrived']}/{run['n']} arrived |")
    lines += [f"| e2e p50 ÷ chain p50 | {r['e2e_p50_ratio']} (goal ≤ 2) |",
              f"| e2e p99 ÷ chain p99 | {r['e2e_p99_ratio']} (goal ≤ 3) |",
              f"| sustained 100/s for {r['sustained']['seconds']} s | {r['sustained']['errors']} errors, queue depth "
              f"max {r['sustained']['max_queue_depth']}, at the end {r['sustained']['final_queue_depth']} |"]
    for workers, run in r["scale_out"].items():
        lines.append(f"| {workers} worker process(es) per queue | e2e p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms |")
    lines += ["| matching worker p50, request → first offer | "
              + ", ".join(f"{int(n):,} volunteers {ms} ms" for n, ms in r["match_path_p50_ms"].items())
              + " (goal ≤ 10 ms at 10,000, ≤ 2× from 1,000 to 50,000) |", "",
              "Peak RSS per process (MiB): " + ", ".join(f"{k} {v}" for k, v in r["peak_rss_mib"].items()), "",
              f"![latency](latest-{r['backend']}.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="make bench")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the harness)")
    args = parser.parse_args()
    seconds = 5 if args.quick else 15
    sustained_seconds = 10 if args.quick else 60
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "LINLI_DATA_DIR": tempfile.mkdtemp(prefix="linli-bench-echo-")}
    report: dict = {"backend": args.backend, "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
                    f"Python {platform.python_version()}", "load_generator": "same machine"}

    echo, echo_url = gunicorn_echo(env)
    try:
        echo_rps = closed_loop(post_json(echo_url), clients=16, duration=seconds)
    finally:
        os.killpg(echo.pid, signal.SIGTERM)
    report["baselines"] = {"echo_rps": echo_rps, "chain": chain_baseline(env, 100, seconds)}

    with WebhookReceiver() as hook:
        workdir = Path(tempfile.mkdtemp(prefix="linli-bench-"))
        system = start_system(workdir, args.backend, hook, concurrency=2)
        try:
            report["cpu"] = cpu_per_request(system, hook, n=200 if args.quick else 400)
            intake_url = f"{system.urls['requests']}/api/v1/requests"
            # Complaints go to staff (one escalation each), so these thousands
            # of requests do not keep volunteers' offers churning later.
            complaints = post_json(intake_url, category="complaint")
            saturation = closed_loop(complaints, clients=16, duration=seconds)
            with workers_paused(system):
                alone = closed_loop(complaints, clients=16, duration=seconds)
            runs = [open_loop(complaints, rate, seconds) for rate in (50, 100, 200)]
            report["intake"] = {"saturation_rps": saturation, "alone_rps": alone, "open_loop": runs}
            time.sleep(5)
            report["e2e"] = {"runs": [e2e(system, hook, rate, seconds) for rate in (50, 100)]}
            stop, samples = threading.Event(), []
            sampler = threading.Thread(target=queue_depths, args=(stop, samples), daemon=True)
            sampler.start()
            sustained = open_loop(post_json(intake_url), 100, sustained_seconds)
            stop.set()
            depth = [sum(s.values()) for s in samples]
            report["sustained"] = {"seconds": sustained_seconds, "errors": sustained["errors"],
                                   "p99_ms": sustained["p99_ms"], "max_queue_depth": max(depth) if depth else None,
                                   "final_queue_depth": depth[-1] if depth else None,
                                   "depth_by_second": depth}
            report["peak_rss_mib"] = peak_rss(system)
            report["scale_out"] = {"2": report["e2e"]["runs"][-1]}
        finally:
            system.stop()
        system = start_system(Path(tempfile.mkdtemp(prefix="linli-bench-")), args.backend, hook, concurrency=1)
        try:
            report["scale_out"]["1"] = e2e(system, hook, 100, seconds)
        finally:
            system.stop()

    # The matching worker's own code on a database of 1k, 10k and 50k
    # volunteers (the engine's figures it replaced measured code the product
    # never ran).
    report["matching"] = matching.match_path(args.backend)
    report["match_path_p50_ms"] = {n: r["p50_ms"] for n, r in report["matching"].items()}
    report["intake_ratio"] = round(report["intake"]["saturation_rps"] / echo_rps, 3)
    report["intake_alone_ratio"] = round(report["intake"]["alone_rps"] / echo_rps, 3)
    chain = report["baselines"]["chain"]
    at100 = report["e2e"]["runs"][-1]
    report["e2e_p50_ratio"] = round(at100["p50_ms"] / chain["p50_ms"], 2) if at100["p50_ms"] else None
    report["e2e_p99_ratio"] = round(at100["p99_ms"] / chain["p99_ms"], 2) if at100["p99_ms"] else None

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    (RESULTS / f"latest-{args.backend}.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    plot(report, RESULTS / f"latest-{args.backend}.png")
    (RESULTS / f"latest-{args.backend}.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    print(f"written to {RESULTS}/latest.json, latest-{args.backend}.md and .png")


if __name__ == "__main__":
    main()
