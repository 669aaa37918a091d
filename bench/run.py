"""make bench: the whole path against its own limits, measured in one run.

Starts Linli as real processes (tests.system: the Procfile's gunicorn web
services, Celery workers and beat) on its own Redis database (13), with the
load generators on the same machine, and measures what users get:

1. Throughput at saturation with wrk (Debian's `wrk`, a C load generator,
   bench/post.lua for the POST body): a bare Flask JSON echo (bench/echo.py)
   and intake (POST /api/v1/requests), both under deploy/gunicorn.conf.py
   with the same number of web workers. Intake is measured with the whole
   system running (`intake_ratio`) and with the workers and beat stopped
   (`intake_alone_ratio`: the web tier alone, as in a burst's first
   minutes). The rate limits are set for the benchmark through
   LINLI_RATE_LIMITS (far above what one address sends here; the limiter
   still counts every request in Redis, as in production).
2. Latency at a rate well below capacity, open loop (the Python generator,
   far from its own limit of some hundreds per second; each request is timed
   from its planned send time, so a stall is not hidden): submit → first
   offer at a local webhook at 10 requests/s, against a bare three-hop
   Celery chain (bench/chain.py, started with the Procfile's worker flags)
   at 10/s on the same Redis.
3. `capacity_rps`: the highest rate held for a minute, verified by running
   it: rates are stepped and bisected, each held 60 s; a rate is held when
   every submit succeeds on time, the Redis queues sampled each second do
   not trend up, every first offer arrives, and end-to-end latency does not
   grow from the first third of the minute to the last.
4. CPU per request: the whole machine's busy time (/proc/stat: every
   process — web, workers, beat, Redis, the database, the kernel) minus
   this process's own (the load generator and the webhook receiver), from
   the first submit until the last first offer is delivered and the queues
   are empty, per request, at 20/s (`cpu_ms_per_request`); the same for a
   bare Flask echo plus the bare 3-hop chain (`cpu_floor_ms`), same run.
5. The matching worker's path (bench.matching.match_path) with 1k, 10k and
   50k volunteers in the database.

Writes bench/results/latest.json, latest-<backend>.json, a Markdown report
(latest-<backend>.md: the goal table, which keys changed meaning) and a
latency plot, and prints the report. Asserts nothing about time. Other
load on the machine counts in the CPU figures: run it on a quiet machine.

    python -m bench.run [--backend sqlite|postgresql] [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
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
from services.common.settings import RATE_LIMITS
from tests.receivers import WebhookReceiver, free_port, wait_for
from tests.system import ROOT, System, procfile

RESULTS = ROOT / "bench" / "results"
REDIS_DB = "redis://127.0.0.1:6379/13"
SKILLS = ("haircut", "alterations", "appliance_repair", "sharpening", "umbrella_repair", "bicycle_repair")
WEB_WORKERS = "2"  # gunicorn workers, the same for the echo and every service
# The benchmark drives intake from one address, as a load generator, not as
# residents: the limits (per address) are set far above what it sends, and
# Flask-Limiter still counts each request in Redis (README, Operations).
BENCH_RATE_LIMITS = json.dumps({name: "100000000 per minute" for name in RATE_LIMITS})
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


def ratio(a, b, digits=2):
    return round(a / b, digits) if a is not None and b else None


# --- load generators ---


def open_loop(send, rate: float, duration: float, threads: int = 48) -> dict:
    """Send at `rate`/s for `duration` s; latency counts from the planned
    time. `dispatch_lag` is how late a request left against its plan (the
    generator's or the server's backlog: a rate not really offered)."""
    n = int(rate * duration)
    start = time.time() + 0.5
    latencies, lags, errors = [], [], 0
    lock = threading.Lock()

    def one(i):
        nonlocal errors
        planned = start + i / rate
        delay = planned - time.time()
        if delay > 0:
            time.sleep(delay)
        lag = time.time() - planned
        ok = send(i, planned)
        with lock:
            latencies.append(time.time() - planned)
            lags.append(lag)
            errors += 0 if ok else 1

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(n)))
    return {"rate": rate, "n": n, "errors": errors, "p50_ms": ms(pct(latencies, 0.5)),
            "p99_ms": ms(pct(latencies, 0.99)), "max_ms": ms(max(latencies)),
            "dispatch_lag_p99_ms": ms(pct(lags, 0.99))}


def wrk(url: str, seconds: float, connections: int = 16, threads: int = 1) -> dict:
    """Requests/s answered 2xx at saturation, closed loop, by wrk (C, one
    thread: it takes a small part of one core at these rates)."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s", "--timeout", "10s",
           "-s", str(ROOT / "bench" / "post.lua"), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    elapsed = re.search(r"requests in ([\d.]+)(m?s)", out)
    took = float(elapsed.group(1)) / (1000 if elapsed.group(2) == "ms" else 1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(map(int, socket.groups())) if socket else 0
    return {"rps": round((total - errors) / took, 1), "requests": total, "seconds": round(took, 2),
            "non_2xx": errors, "socket_errors": socket_errors, "connections": connections, "threads": threads}


def wrk_saturation(url: str, seconds: float) -> dict:
    wrk(url, 2)  # warm up: connections, imports, the first requests' caches
    return wrk(url, seconds)


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


# --- CPU ---


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far, all cores (/proc/stat:
    user, nice, system, irq, softirq; not idle, iowait or steal, which is
    time the hypervisor gave to someone else)."""
    user, nice, system_, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system_ + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """This process's CPU seconds: the load generator and the webhook
    receiver (threads of this process), not the system under test."""
    t = os.times()
    return t.user + t.system


class CpuWindow:
    """The machine's busy CPU seconds minus this process's own, between
    start() and stop()."""

    def start(self):
        self.machine, self.own, self.wall = machine_busy(), own_cpu(), time.time()
        return self

    def stop(self) -> dict:
        machine, own = machine_busy() - self.machine, own_cpu() - self.own
        return {"system_s": max(0.0, machine - own), "generator_s": own, "wall_s": time.time() - self.wall}


def idle_busy(seconds: float = 5) -> float:
    """Busy CPU seconds per second of the machine with nothing sent (the
    processes' idle ticks — and, on a shared machine, everyone else's work)."""
    window = CpuWindow().start()
    time.sleep(seconds)
    used = window.stop()
    return round(used["system_s"] / used["wall_s"], 3)


def group_pids(proc) -> set[int]:
    """A started process and everything in its process group (gunicorn's
    and Celery's children)."""
    return {proc.pid} | {int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == proc.pid}


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def cpu_seconds(procs: dict) -> dict:
    """CPU time (user + system) of each process group so far, with its
    reaped children (cutime, cstime): a diagnostic breakdown; the figure
    itself is the machine-wide one (CpuWindow)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, proc in procs.items():
        total = 0
        for pid in group_pids(proc):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        out[name] = total / tick
    return out


def peak_rss(procs: dict) -> dict:
    """Peak resident memory (VmHWM) of each process group's largest process, in MiB."""
    out = {}
    for name, proc in procs.items():
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


def chain_worker_command(hop: str) -> str:
    """The Procfile's requests-worker command with bench.chain's app, the
    hop's queue and name: the very same worker flags as Linli's."""
    command = procfile()["requests-worker"]
    command = re.sub(r"-A\s+\S+", "-A bench.chain:app", command)
    command = re.sub(r"-Q\s+\S+", f"-Q {hop}", command)
    return re.sub(r"-n\s+\S+", f"-n {hop}@%h", command)


@contextlib.contextmanager
def chain_workers(env: dict, logdir: Path):
    client = redis.Redis.from_url(REDIS_DB)
    client.flushdb()
    chain_env = {**env, "LINLI_REDIS_URL": REDIS_DB}
    procs = {hop: subprocess.Popen(chain_worker_command(hop), shell=True, cwd=ROOT, env=chain_env,
                                   start_new_session=True, stdout=open(logdir / f"{hop}.log", "wb"),
                                   stderr=subprocess.STDOUT) for hop in ("hop1", "hop2", "hop3")}
    try:
        from bench.chain import app as chain_app
        chain_app.send_task("hop1", args=[time.time(), "bench:warmup"], queue="hop1")
        wait_for(lambda: client.llen("bench:warmup") > 0, timeout=60, what="the chain's workers")
        yield procs
    finally:
        for p in procs.values():
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            p.wait(timeout=30)


def chain_run(rate: float, duration: float, also=None) -> dict:
    """Chains at `rate`/s (and, with `also`, one more request per chain —
    the echo, for the CPU floor); latency from the planned time to hop3."""
    from bench.chain import app as chain_app
    client = redis.Redis.from_url(REDIS_DB)
    key = f"bench:chain:{rate}:{time.time()}"

    def send(i, planned):
        ok = also(i, planned) if also else True
        chain_app.send_task("hop1", args=[planned, key], queue="hop1")
        return ok

    run = open_loop(send, rate, duration, threads=8)
    wait_for(lambda: client.llen(key) >= run["n"], timeout=120, what="every chain to arrive")
    latencies = [float(b) - float(a) for a, b in (x.decode().split() for x in client.lrange(key, 0, -1))]
    return {"rate": rate, "n": run["n"], "errors": run["errors"], "p50_ms": ms(pct(latencies, 0.5)),
            "p99_ms": ms(pct(latencies, 0.99))}


def baselines(env: dict, quick: bool) -> dict:
    """The bare Flask echo (wrk at saturation) and the bare 3-hop chain
    (latency at 10/s), and their CPU per request together at 20/s."""
    logdir = Path(tempfile.mkdtemp(prefix="linli-bench-chain-"))
    echo, echo_url = gunicorn_echo(env)
    try:
        echo_wrk = wrk_saturation(echo_url, 5 if quick else 15)
        with chain_workers(env, logdir) as procs:
            chain = chain_run(10, 10 if quick else 30)
            n = 100 if quick else 400
            idle = idle_busy(3 if quick else 5)
            window = CpuWindow().start()
            floor_run = chain_run(20, n / 20, also=post_json(echo_url))
            time.sleep(2)  # as for the system: the same settling time
            used = window.stop()
            floor = {"rate": 20, "n": n, "ms": round(used["system_s"] / n * 1000, 2), "idle_busy_cores": idle,
                     "ms_above_idle": round((used["system_s"] - idle * used["wall_s"]) / n * 1000, 2),
                     "generator_ms": round(used["generator_s"] / n * 1000, 2), "seconds": round(used["wall_s"], 1),
                     "echo_errors": floor_run["errors"], "worker_command": chain_worker_command("hop1"),
                     "peak_rss_mib": peak_rss({**procs, "echo": echo})}
    finally:
        os.killpg(echo.pid, signal.SIGTERM)
        echo.wait(timeout=30)
    return {"echo": echo_wrk, "echo_rps": echo_wrk["rps"], "chain": chain, "cpu_floor": floor}


# --- the system ---


# Offers hold a volunteer's place for their 30 minutes and nobody answers
# in the benchmark, so the roster must have room for every request a run
# sends (the capacity search sends tens of thousands): 2,000 volunteers with
# two services each and room for 10 tasks (the most allowed) hold 6,666
# places per service, 40,000 in all. (Earlier runs had 600 volunteers; the
# matching worker loads the volunteers with the service in the request's
# grid, about 110 instead of 33.)
ROSTER = 2000


def roster_csv(volunteers: int, hook: WebhookReceiver) -> str:
    lines = ["name,phone,building,unit,skills,capacity,channels"]
    for i in range(volunteers):
        skills = f"{SKILLS[i % len(SKILLS)]} {SKILLS[(i + 3) % len(SKILLS)]}"
        lines.append(f"志愿者{i},136{i:08d},{1 + i % 69},1,{skills},10,{hook.url(f'/v/{i}')}")
    return "\n".join(lines) + "\n"


def start_system(workdir: Path, backend: str, hook: WebhookReceiver) -> System:
    from services.common.community import load as load_community
    from services.common.settings import base_config
    community = json.loads(json.dumps(load_community(base_config("requests")["COMMUNITY_FILE"])))
    env = {"LINLI_WEB_WORKERS": WEB_WORKERS, "LINLI_RATE_LIMITS": BENCH_RATE_LIMITS}
    redis.Redis.from_url(REDIS_DB).flushdb()
    system = System(workdir, backend, REDIS_DB, community, env).start()
    try:
        roster = roster_csv(ROSTER, hook).encode("utf-8")
        resp = requests.post(f"{system.urls['volunteers']}/api/v1/volunteers/import", headers=system.admin(),
                             files={"file": ("roster.csv", roster)}, timeout=300)
        assert resp.status_code == 200 and resp.json()["imported"] == ROSTER, resp.text[:500]
    except BaseException:
        system.stop()  # its workers would go on taking the next run's tasks from the same Redis database
        raise
    return system


PLANNED = re.compile(r"p=(\d+\.\d+)")


def queue_depth() -> int:
    client = redis.Redis.from_url(REDIS_DB)
    return sum(client.llen(q) for q in contract.QUEUES)


def drained(timeout: float = 300) -> float:
    """Wait until the service queues are empty (what earlier runs left behind);
    returns how long that took."""
    start = time.time()
    while time.time() - start < timeout and queue_depth():
        time.sleep(1)
    return round(time.time() - start, 1)


def settled(hook: WebhookReceiver, timeout: float = 300) -> float:
    """Wait until the queues are empty and no webhook has come for 3 s: an
    overloaded step's backlog is not only in Redis (tasks taken but not done,
    offers still being sent), and the next step must not start on it."""
    start = time.time()
    drained(timeout)
    seen, quiet_since = len(hook.received), time.time()
    while time.time() - start < timeout and time.time() - quiet_since < 3:
        time.sleep(0.5)
        if len(hook.received) != seen or queue_depth():
            seen, quiet_since = len(hook.received), time.time()
    return round(time.time() - start, 1)


def first_offers(hook: WebhookReceiver, window_start: float, window_end: float) -> dict:
    """planned send time → when its first offer reached a volunteer's webhook."""
    found = {}
    for r in list(hook.received):
        match = PLANNED.search(r["body"].get("message", "") if isinstance(r["body"], dict) else "")
        if match and window_start <= float(match.group(1)) <= window_end:
            found.setdefault(match.group(1), r["at"])
    return found


def submit_run(system: System, hook: WebhookReceiver, rate: float, duration: float, grace: float = 120,
               cpu: bool = False) -> dict:
    """Requests to volunteers at `rate`/s, open loop; each one's latency from
    its planned send time to its first offer at the webhook; the queues'
    depth each second; with `cpu`, the machine's CPU from the first submit
    until the last first offer is in and the queues are empty."""
    waited = settled(hook)
    hook.received.clear()
    stop, depths = threading.Event(), []

    def sample():
        while not stop.is_set():
            depths.append(queue_depth())
            time.sleep(1)

    sampler = threading.Thread(target=sample, daemon=True)
    window = CpuWindow().start() if cpu else None
    window_start = time.time()
    sampler.start()
    run = open_loop(post_json(f"{system.urls['requests']}/api/v1/requests"), rate, duration)
    sent_end = time.time()
    stop.set()
    expected = run["n"] - run["errors"]
    deadline = time.time() + grace
    while len(first_offers(hook, window_start, sent_end)) < expected and time.time() < deadline:
        time.sleep(0.5)
    arrived_by = time.time() - sent_end
    firsts = first_offers(hook, window_start, sent_end)
    used = None
    if window:
        drained(grace)
        time.sleep(2)  # the status changes after the last offer
        used = window.stop()
    latencies = sorted((float(planned), at - float(planned)) for planned, at in firsts.items())
    out = {"rate": rate, "seconds": duration, "n": run["n"], "submit_errors": run["errors"],
           "submit_p50_ms": run["p50_ms"], "submit_p99_ms": run["p99_ms"],
           "dispatch_lag_p99_ms": run["dispatch_lag_p99_ms"], "arrived": len(latencies),
           "arrived_within_s": round(arrived_by, 1),
           "p50_ms": ms(pct([lat for _, lat in latencies], 0.5)),
           "p99_ms": ms(pct([lat for _, lat in latencies], 0.99)),
           "drained_before_s": waited, "depth_by_second": depths, "latencies": latencies}
    if used:
        out["cpu"] = used
    return out


def held(step: dict) -> tuple[bool, str]:
    """Was the rate carried for the whole run? Every submit answered 201 and
    sent on time, every first offer in, the queues and the end-to-end latency
    not growing from the first third of the run to the last."""
    rate, n = step["rate"], step["n"]
    if step["submit_errors"] > 0.005 * n:
        return False, f"{step['submit_errors']} submits failed"
    if (step["dispatch_lag_p99_ms"] or 0) > 1000:
        return False, f"submits left {step['dispatch_lag_p99_ms']} ms late (p99): intake or the generator fell behind"
    if step["arrived"] < n - step["submit_errors"]:
        return False, f"{step['arrived']}/{n} first offers arrived"
    depths = step["depth_by_second"]
    third = max(1, len(depths) // 3)
    first, last = depths[:third], depths[-third:]
    growth = sum(last) / len(last) - sum(first) / len(first)
    if growth > max(10, 0.1 * rate):
        return False, f"queue depth grew by {growth:.0f} (mean of the last third − the first)"
    lat = step["latencies"]
    third = max(1, len(lat) // 3)
    early = pct([x for _, x in lat[:third]], 0.5)
    late = pct([x for _, x in lat[-third:]], 0.5)
    if late > max(2 * early, early + 1.0):
        return False, f"end-to-end p50 grew from {ms(early)} to {ms(late)} ms"
    return True, f"queue depth change {growth:+.0f}, e2e p50 {ms(early)} → {ms(late)} ms"


def round_rate(rate: float) -> int:
    return max(5, int(round(rate / 5) * 5)) if rate >= 10 else max(1, int(round(rate)))


def capacity(system: System, hook: WebhookReceiver, estimate: float | None, hold: float, max_steps: int,
             budget_s: float) -> dict:
    """The highest rate held for `hold` seconds: start below the CPU
    estimate, step up ×1.25 while held and down ×0.8 while not, bisect once
    both are known; at most `max_steps` runs and `budget_s` seconds."""
    # Not below 10/s: on a machine busy with other work the estimate says little.
    rate = max(10, round_rate(0.85 * estimate)) if estimate else 30
    good, bad, steps, began = None, None, [], time.time()
    while len(steps) < max_steps and time.time() - began < budget_s:
        step = submit_run(system, hook, rate, hold, grace=30)
        ok, why = held(step)
        steps.append({k: v for k, v in step.items() if k != "latencies"} | {"held": ok, "why": why})
        print(f"  capacity: {rate}/s for {hold:.0f} s: {'held' if ok else 'not held'} ({why})", flush=True)
        if ok:
            good = rate if good is None else max(good, rate)
        else:
            bad = rate if bad is None else min(bad, rate)
        if good is not None and bad is not None:
            if bad - good <= max(2, 0.06 * good):
                break
            rate = round_rate((good + bad) / 2) if bad - good >= 10 else (good + bad) // 2
            if rate in (good, bad):
                break
        elif good is not None:
            rate = max(good + 5, round_rate(good * 1.25))
        elif bad <= 1:
            break
        else:
            rate = min(bad - 1, round_rate(bad * 0.8))
    at = next((s for s in steps if s["held"] and s["rate"] == good), None)
    return {"capacity_rps": good, "lowest_not_held_rps": bad, "hold_seconds": hold, "steps": steps,
            "e2e_at_capacity": {k: at[k] for k in ("rate", "p50_ms", "p99_ms", "submit_p99_ms")} if at else None}


def stop_workers(system: System) -> list[str]:
    """Stop the Celery workers and beat for good (SIGTERM: each finishes its
    task and lets go of its database), leaving the web tier alone on the
    cores, as in the first minutes of a burst while Redis holds the events.
    (SIGSTOP, as before, froze a worker inside a SQLite write and intake with
    it.) The last measurement of a run."""
    names = [n for n in system.procs if n.endswith("-worker") or n == "beat"]
    for name in names:
        os.killpg(system.procs[name].pid, signal.SIGTERM)
    for name in names:
        try:
            system.procs[name].wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(system.procs[name].pid, signal.SIGKILL)
            system.procs[name].wait()
    return names


def cpu_per_request(system: System, hook: WebhookReceiver, n: int, idle: float) -> dict:
    """CPU milliseconds of the whole machine per request (every process but
    this one), from the first submit until every first offer is delivered
    and the queues are empty, at 20/s; the processes' own share as a
    diagnostic breakdown."""
    rate = 20
    before = cpu_seconds(system.procs)
    step = submit_run(system, hook, rate, n / rate, cpu=True)
    after = cpu_seconds(system.procs)
    used = step["cpu"]

    def per_request(seconds):
        return round(seconds / step["n"] * 1000, 2)

    by_process = {name: per_request(after[name] - before[name]) for name in after}
    total = per_request(used["system_s"])
    return {"rate": rate, "n": step["n"], "arrived": step["arrived"], "submit_errors": step["submit_errors"],
            "ms": total, "ms_above_idle": per_request(used["system_s"] - idle * used["wall_s"]),
            "ms_by_process": by_process,
            "ms_redis_database_kernel_other": round(max(0.0, total - sum(by_process.values())), 2),
            "ms_load_generator_and_receiver": per_request(used["generator_s"]), "seconds": round(used["wall_s"], 1),
            "cores": os.cpu_count(),
            "capacity_estimate_rps": round(os.cpu_count() * 1000 / total, 1) if total else None}


def system_run(backend: str, quick: bool) -> dict:
    out = {}
    with WebhookReceiver() as hook:
        system = start_system(Path(tempfile.mkdtemp(prefix="linli-bench-")), backend, hook)
        try:
            # Warm up (the first requests import and connect), then a quiet moment.
            submit_run(system, hook, 10, 3)
            out["idle_busy_cores"] = idle_busy(3 if quick else 5)
            out["e2e_10rps"] = {k: v for k, v in submit_run(system, hook, 10, 10 if quick else 30).items()
                                if k not in ("latencies", "depth_by_second")}
            out["cpu"] = cpu_per_request(system, hook, n=100 if quick else 400, idle=out["idle_busy_cores"])
            print(f"  e2e at 10/s p50 {out['e2e_10rps']['p50_ms']} ms; CPU {out['cpu']['ms']} ms/request", flush=True)
            out["capacity"] = capacity(system, hook, out["cpu"]["capacity_estimate_rps"], hold=15 if quick else 60,
                                       max_steps=2 if quick else 5, budget_s=120 if quick else 400)
            complaints = post_json(f"{system.urls['requests']}/api/v1/requests", category="complaint")
            out["intake_open_loop"] = [open_loop(complaints, rate, 5 if quick else 10) for rate in (50, 100)]
            out["peak_rss_mib"] = peak_rss(system.procs)
            seconds = 5 if quick else 15
            intake_url = f"{system.urls['requests']}/api/v1/requests"
            out["intake_wrk"] = wrk_saturation(intake_url, seconds)
            names = stop_workers(system)
            out["intake_alone_wrk"] = wrk_saturation(intake_url, seconds) | {"stopped": names}
        finally:
            system.stop()
    return out


def match_path(backend: str, quick: bool) -> dict:
    fn = getattr(matching, "match_path", None)
    if fn is None:
        return {"skipped": "bench.matching.match_path does not exist yet (the product path's matching "
                           "benchmark, issue #19); match_path_p50_ms is not measured"}
    try:
        return fn(backend, sizes=(1000,) if quick else (1000, 10000, 50000))
    except Exception as exc:  # the rest of the run's figures are kept
        return {"skipped": f"bench.matching.match_path failed: {exc!r}"}


# --- the report ---

GOALS = [
    # key, meaning, goal
    ("cpu_ms_per_request", "CPU of every process (web, workers, beat, Redis, database, kernel; not the load "
     "generator) per request, submit → first offer delivered, at 20 requests/s", "≤ 25 on SQLite"),
    ("cpu_floor_ms", "the same measure for a bare Flask echo plus a bare 3-hop Celery chain with Linli's worker "
     "flags, same run", "reported"),
    ("cpu_ratio", "cpu_ms_per_request ÷ cpu_floor_ms", "≤ 2"),
    ("capacity_rps", "the highest rate held for 60 s, queue depth not growing, every first offer in (run, not "
     "computed)", "≥ 75 on SQLite"),
    ("intake_alone_ratio", "intake with the workers stopped ÷ bare echo, both with wrk", "≥ 0.25"),
    ("e2e_p50_ratio_10rps", "submit → first offer at a webhook at 10/s, p50 ÷ bare chain's p50 at 10/s", "≤ 4"),
    ("e2e_p99_ratio_10rps", "the same, p99 ÷ bare chain's p99 at 10/s", "≤ 6"),
    ("match_path_p50_ms", "volunteers in the database → matching worker's p50, receipt to first offer published",
     "≤ 10 at 10,000; ≤ 2× from 1,000 to 50,000"),
]

CHANGED = [
    ("intake_ratio", "same meaning (intake with the whole system running ÷ bare echo), now both with wrk instead of "
     "the Python generator, which capped the echo"),
    ("intake_alone_ratio", "now both with wrk; beat and every worker (community too) are stopped"),
    ("baselines.echo_rps", "now wrk's figure for the echo (the Python generator's was its own limit)"),
    ("baselines.chain", "the bare chain at 10/s (was 100/s), its workers started with the Procfile's worker flags"),
    ("intake.saturation_rps, intake.alone_rps", "now system.intake_wrk and system.intake_alone_wrk (wrk's figures)"),
    ("cpu", "was each Linli process's CPU plus the rest of the machine only when positive; now the machine's busy "
     "time (steal excluded) minus the load generator, per request sent; the processes' breakdown counts reaped "
     "children too"),
    ("capacity_rps", "new top-level key, run, not computed; the old cpu.capacity_rps (cores ÷ CPU per request) is "
     "cpu.capacity_estimate_rps, the capacity search's starting point"),
    ("e2e_p50_ratio, e2e_p99_ratio", "removed: they were end to end at 100/s ÷ the chain at 100/s, a rate these 2 "
     "cores cannot carry, so the queue's length; see e2e_p50_ratio_10rps, e2e_p99_ratio_10rps"),
    ("sustained, scale_out", "removed: 60 s at 100/s and 1 vs 2 workers at 100/s measured a growing queue; the "
     "capacity search's steps (capacity.steps) hold rates for 60 s with the queue depth sampled"),
    ("intake.open_loop", "intake latency at 50 and 100/s (no longer 200/s), now intake_open_loop"),
    ("(the roster)", f"{ROSTER:,} volunteers, not 600: the capacity search needs room for every offer (a volunteer "
     "takes 10 at most, and nobody answers); every figure of the system is with this roster"),
    ("rank_10k_p50_ms, batch_1000x5000_ms", "removed with engine.VolunteerIndex/rank_indexed, which the product "
     "never called; match_path_p50_ms is the product path"),
]


def goal_figures(r: dict) -> dict:
    return {key: r.get(key) for key, _, _ in GOALS}


def markdown(r: dict) -> str:
    lines = [f"# Linli benchmark ({r['backend']}{', quick' if r['quick'] else ''})", "",
             f"Machine: {r['machine']}; load generators on the same machine. Took {r['took_s']} s ("
             + ", ".join(f"{k} {v} s" for k, v in r["phases_s"].items()) + "). "
             f"Busy cores before the run with nothing sent: {r['system']['idle_busy_cores']} "
             "(other work on the machine counts in the CPU figures).", "",
             "## Goals (issue #19)", "", "| key | meaning | goal | figure |", "|---|---|---|---|"]
    for key, meaning, goal in GOALS:
        lines.append(f"| `{key}` | {meaning} | {goal} | {r.get(key)} |")
    b, s = r["baselines"], r["system"]
    cpu, floor, cap = s["cpu"], b["cpu_floor"], s["capacity"]
    lines += ["", "## Measures", "", "| measure | value |", "|---|---|",
              f"| bare echo, wrk at saturation | {b['echo']['rps']} req/s ({b['echo']['non_2xx']} non-2xx) |",
              f"| intake, wrk, whole system running | {s['intake_wrk']['rps']} req/s, ÷ echo {r['intake_ratio']} "
              f"({s['intake_wrk']['non_2xx']} non-2xx) |",
              f"| intake, wrk, workers and beat stopped | {s['intake_alone_wrk']['rps']} req/s, ÷ echo "
              f"{r['intake_alone_ratio']} ({s['intake_alone_wrk']['non_2xx']} non-2xx) |",
              f"| bare 3-hop chain at 10/s | p50 {b['chain']['p50_ms']} ms, p99 {b['chain']['p99_ms']} ms |",
              f"| end to end at 10/s | p50 {s['e2e_10rps']['p50_ms']} ms, p99 {s['e2e_10rps']['p99_ms']} ms, "
              f"{s['e2e_10rps']['arrived']}/{s['e2e_10rps']['n']} arrived |",
              f"| CPU per request at 20/s, whole machine | {cpu['ms']} ms ({cpu['n']} requests, "
              f"{cpu['arrived']} first offers); by process: "
              + ", ".join(f"{k} {v}" for k, v in cpu["ms_by_process"].items() if v)
              + f"; Redis, database, kernel, other {cpu['ms_redis_database_kernel_other']} ms "
              f"(load generator and receiver {cpu['ms_load_generator_and_receiver']} ms, not counted) |",
              f"| CPU floor at 20/s: echo + 3-hop chain | {floor['ms']} ms (workers: `{floor['worker_command']}`) |",
              f"| the same, minus the machine's busy time with nothing sent (noise on a shared machine) | "
              f"{cpu['ms_above_idle']} ms per request, floor {floor['ms_above_idle']} ms (idle: "
              f"{s['idle_busy_cores']} and {floor['idle_busy_cores']} cores busy) |",
              f"| capacity, held {cap['hold_seconds']:.0f} s | {cap['capacity_rps']} req/s (lowest not held: "
              f"{cap['lowest_not_held_rps']}; estimate from CPU {cpu['capacity_estimate_rps']}) |"]
    for step in cap["steps"]:
        lines.append(f"| — {step['rate']}/s | {'held' if step['held'] else 'not held'}: {step['why']}; e2e p50 "
                     f"{step['p50_ms']} ms, p99 {step['p99_ms']} ms |")
    for run in s["intake_open_loop"]:
        lines.append(f"| intake at {run['rate']}/s (open loop) | p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
                     f"{run['errors']} errors |")
    if "skipped" in r["match_path"]:
        lines.append(f"| matching worker's path | skipped: {r['match_path']['skipped']} |")
    lines += ["", "Peak RSS per process (MiB): " + ", ".join(f"{k} {v}" for k, v in s["peak_rss_mib"].items()), "",
              "## Keys that changed meaning", ""]
    lines += [f"- `{key}`: {what}" for key, what in CHANGED]
    lines += ["", f"![latency](latest-{r['backend']}.png)", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    s = report["system"]
    intake = s["intake_open_loop"]
    ax.plot([r["rate"] for r in intake], [r["p50_ms"] for r in intake], "o-", label="intake p50")
    ax.plot([r["rate"] for r in intake], [r["p99_ms"] for r in intake], "o--", label="intake p99")
    runs = [s["e2e_10rps"]] + [st for st in s["capacity"]["steps"] if st["p50_ms"]]
    ax.plot([r["rate"] for r in runs], [r["p50_ms"] for r in runs], "s", color="tab:green", label="end to end p50")
    ax.plot([r["rate"] for r in runs], [r["p99_ms"] for r in runs], "s", color="tab:red", label="end to end p99")
    ax.axhline(report["baselines"]["chain"]["p50_ms"], color="grey", linestyle=":", label="bare chain p50 (10/s)")
    if s["capacity"]["capacity_rps"]:
        ax.axvline(s["capacity"]["capacity_rps"], color="black", linestyle="--", label="capacity (held 60 s)")
    ax.set_xlabel("requests/s (open loop)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title(f"Linli on {report['machine']}, {report['backend']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description="make bench")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the harness)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("make bench needs wrk (Debian: apt-get install wrk; `make bench-prereqs` installs it as root)")
    began = time.time()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "LINLI_DATA_DIR": tempfile.mkdtemp(prefix="linli-bench-echo-"), "LINLI_WEB_WORKERS": WEB_WORKERS}
    report: dict = {"backend": args.backend, "quick": args.quick,
                    "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
                    "load_generator": "same machine: wrk at saturation, an open-loop Python generator at fixed rates",
                    "roster_volunteers": ROSTER}
    phases = report["phases_s"] = {}
    print("baselines: echo (wrk), 3-hop chain at 10/s, CPU floor at 20/s", flush=True)
    report["baselines"] = baselines(env, args.quick)
    phases["baselines"] = round(time.time() - began)
    print(f"system ({args.backend})", flush=True)
    report["system"] = system_run(args.backend, args.quick)
    phases["system"] = round(time.time() - began) - sum(phases.values())
    print("matching", flush=True)
    report["match_path"] = match_path(args.backend, args.quick)
    phases["match_path"] = round(time.time() - began) - sum(phases.values())

    b, s = report["baselines"], report["system"]
    echo = b["echo_rps"]
    report["intake_ratio"] = ratio(s["intake_wrk"]["rps"], echo, 3)
    report["intake_alone_ratio"] = ratio(s["intake_alone_wrk"]["rps"], echo, 3)
    report["e2e_p50_ratio_10rps"] = ratio(s["e2e_10rps"]["p50_ms"], b["chain"]["p50_ms"])
    report["e2e_p99_ratio_10rps"] = ratio(s["e2e_10rps"]["p99_ms"], b["chain"]["p99_ms"])
    report["cpu_ms_per_request"] = s["cpu"]["ms"]
    report["cpu_floor_ms"] = b["cpu_floor"]["ms"]
    report["cpu_ratio"] = ratio(s["cpu"]["ms"], b["cpu_floor"]["ms"])
    report["capacity_rps"] = s["capacity"]["capacity_rps"]
    report["peak_rss_mib"] = s["peak_rss_mib"]  # unchanged meaning
    if "skipped" not in report["match_path"]:
        report["match_path_p50_ms"] = {str(k): v["p50_ms"] for k, v in report["match_path"].items()}
    phases["matching_engine"] = round(time.time() - began) - sum(phases.values())
    report["goals"] = goal_figures(report)
    report["took_s"] = round(time.time() - began)

    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, ensure_ascii=False)
    (RESULTS / "latest.json").write_text(text)
    (RESULTS / f"latest-{args.backend}.json").write_text(text)
    plot(report, RESULTS / f"latest-{args.backend}.png")
    (RESULTS / f"latest-{args.backend}.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    print(f"written to {RESULTS}/latest.json, latest-{args.backend}.md and .png")


if __name__ == "__main__":
    main()
