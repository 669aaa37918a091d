# ruff: noqa: B023  (each lambda runs at once, inside its loop iteration)
"""make bench-matching: the matching engine on synthetic communities.

Prints figures and writes bench/results/matching.json; asserts nothing
about time (speed goals are read by people, not by the test suite).

- rank: one request against 10,000 volunteers — the full scan (reference)
  and the skill/grid index asking for the best 5;
- batch: 1,000 requests over 5,000 volunteers (greedy, priority first);
- growth: the indexed rank as the number of volunteers grows tenfold.
Communities of 10k, 100k and 1M residents (about 145 residents a
building, as in 翠苑一区; 12 buildings a grid; 3 stairwells a building).
"""
from __future__ import annotations

import json
import platform
import random
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from services.common.contract import VOLUNTEER_SKILLS
from services.volunteers import engine

NOW = datetime(2026, 11, 27, 2, tzinfo=timezone.utc)
OUT = Path(__file__).with_name("results") / "matching.json"


def community(residents: int, rng: random.Random) -> list[engine.Place]:
    buildings = max(1, residents // 145)
    return [engine.Place(str(b), str(u), f"G{b // 12}") for b in range(buildings) for u in (1, 2, 3)]


def volunteers(n: int, places, rng: random.Random) -> list[engine.VolunteerFacts]:
    out = []
    for i in range(n):
        skills = frozenset(rng.sample(VOLUNTEER_SKILLS, rng.choice((1, 1, 2, 3))))
        capacity = rng.choice((1, 2, 2, 3))
        out.append(engine.VolunteerFacts(
            id=i + 1, skills=skills, active=rng.random() > 0.05, capacity=capacity,
            active_tasks=rng.randrange(capacity + 1), place=rng.choice(places), verified=skills,
            last_task_at=NOW - timedelta(days=rng.randrange(60)) if rng.random() > 0.3 else None,
            offers=rng.randrange(20), accepts=rng.randrange(10), rating=rng.choice((None, 3.5, 4.0, 4.5, 5.0)),
        ))
    return out


def requests_(n: int, places, rng: random.Random) -> list[engine.RequestFacts]:
    return [engine.RequestFacts(rng.choice(VOLUNTEER_SKILLS[:6]), rng.choice(places), urgent=rng.random() < 0.1,
                                vulnerable=rng.random() < 0.25) for _ in range(n)]


def timed(fn, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def pct(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure() -> dict:
    results = {"machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
               "communities": {}}
    for residents in (10_000, 100_000, 1_000_000):
        rng = random.Random(residents)
        places = community(residents, rng)
        vols = volunteers(10_000, places, rng)
        reqs = requests_(200, places, rng)
        build = timed(lambda: engine.VolunteerIndex.build(vols), 3)
        index = engine.VolunteerIndex.build(vols)
        it = iter(reqs * 10)
        full = timed(lambda: engine.rank(next(it), vols, NOW), 200)
        it = iter(reqs * 10)
        indexed = timed(lambda: engine.rank_indexed(next(it), index, NOW, limit=5), 200)
        vols5k = volunteers(5_000, places, rng)
        index5k = engine.VolunteerIndex.build(vols5k)
        batch_reqs = requests_(1_000, places, rng)
        batch = timed(lambda: engine.assign_batch(batch_reqs, index5k, NOW), 5)
        assigned = sum(1 for v in engine.assign_batch(batch_reqs, index5k, NOW) if v is not None)
        results["communities"][residents] = {
            "buildings": len(places) // 3,
            "index_build_10k_ms": round(statistics.median(build), 2),
            "rank_10k_full_scan_p50_ms": round(pct(full, 0.5), 3),
            "rank_10k_full_scan_p99_ms": round(pct(full, 0.99), 3),
            "rank_10k_indexed_p50_ms": round(pct(indexed, 0.5), 3),
            "rank_10k_indexed_p99_ms": round(pct(indexed, 0.99), 3),
            "batch_1000x5000_ms": round(statistics.median(batch), 1),
            "batch_assigned": assigned,
        }
    growth = {}
    rng = random.Random(7)
    places = community(1_000_000, rng)
    reqs = requests_(200, places, rng)
    for n in (1_000, 10_000, 100_000):
        index = engine.VolunteerIndex.build(volunteers(n, places, rng))
        it = iter(reqs * 10)
        growth[n] = round(pct(timed(lambda: engine.rank_indexed(next(it), index, NOW, limit=5), 200), 0.5), 3)
    results["indexed_rank_p50_ms_by_volunteers"] = growth
    ten_k = results["communities"][10_000]
    results["rank_10k_p50_ms"] = ten_k["rank_10k_indexed_p50_ms"]
    results["batch_1000x5000_ms"] = ten_k["batch_1000x5000_ms"]
    return results


def main() -> None:
    results = measure()
    growth = results["indexed_rank_p50_ms_by_volunteers"]
    print(f"matching engine — {results['machine']} (goals: rank 10k ≤ 5 ms p50, batch ≤ 150 ms)")
    print(f"{'residents':>10} {'bldgs':>6} {'full p50':>9} {'full p99':>9} {'index p50':>10} {'index p99':>10} "
          f"{'batch ms':>9} {'assigned':>9}")
    for residents, r in results["communities"].items():
        print(f"{residents:>10,} {r['buildings']:>6} {r['rank_10k_full_scan_p50_ms']:>9} "
              f"{r['rank_10k_full_scan_p99_ms']:>9} {r['rank_10k_indexed_p50_ms']:>10} "
              f"{r['rank_10k_indexed_p99_ms']:>10} {r['batch_1000x5000_ms']:>9} {r['batch_assigned']:>9}")
    print("indexed rank p50 by number of volunteers (1M residents): "
          + ", ".join(f"{n:,}: {ms} ms" for n, ms in growth.items()))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
