"""The demo register (LINLI_DEMO=1 only): a synthetic 翠苑一区 faithful to
the community's figures — 3,146 households over the 69 buildings and their
stairwells, about 10,000 residents, 23.8% over 60, about one in seven of
them living alone, some needing care. Every name and number is made up
(a seeded random: the same register on every machine). Bulk inserts, and
Fernet only for the few sealed values, so `make run` stays quick. Rows are
marked `demo`, and `remove-demo` takes them out."""
from __future__ import annotations

import random
import time
from datetime import date, timedelta

import click
from sqlalchemy import delete, func, insert, select

from services.common import community, contract
from services.common import extensions as ext
from services.common.clock import SHANGHAI

from .models import CheckIn, Household, HouseholdPhone, Resident, Visit, VisitPlan

HOUSEHOLDS = 3146
RESIDENTS = 10000
OVER_60_SHARE = 0.238
ALONE_ELDERLY = 330  # ≈14% of the over-60s
ELDERLY_COUPLES = 520
YOUNG_SINGLES = 150
CHILDREN_1_12 = 1200  # ≈12%
FLOORS, ROOMS_PER_FLOOR = 6, 3  # 1984's six-storey walk-ups
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
            "姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴莫孔汤")
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志文斌宇浩凯晨欣怡涵轩雨佳琳博阿根珍凤梅荣福德"
DISABILITIES = ("听力残疾", "视力残疾", "肢体残疾", "言语残疾")


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))


def _mobile(rng: random.Random) -> str:
    return f"1{rng.choice('3589')}{rng.randrange(10**9):09d}"


def seed_register(session, cfg) -> str:
    """Seed the demo register once (idempotent: init-db runs on every start)."""
    if session.scalar(select(Household.id).where(Household.demo.is_(True)).limit(1)) is not None:
        return "demo register present"
    started = time.perf_counter()
    households, residents = build(cfg["PHONE_DIGEST_KEY"], ext.clock().now().astimezone(SHANGHAI).year)
    _insert(session, households, residents)
    plans = _visit_plans(session, ext.clock().now().astimezone(SHANGHAI).date())
    seconds = time.perf_counter() - started
    return (f"demo register: {len(households)} households, {len(residents)} residents, {plans} visit plans "
            f"in {seconds:.2f} s")


def _visit_plans(session, today: date) -> int:
    """Weekly visits for everyone over 80 who lives alone, a quarter of them
    by their hallway leader; the first ones come due over the next week, so
    that the demo's queue gets a few each day rather than all at once."""
    ids = session.scalars(select(Resident.id).where(Resident.lives_alone.is_(True),
                                                    Resident.birth_year <= today.year - 80)
                          .order_by(Resident.id)).all()
    if ids:
        session.execute(insert(VisitPlan), [
            {"resident_id": rid, "rhythm": "weekly", "visitor": "hallway_leader" if i % 4 == 0 else "any_volunteer",
             "next_due": today + timedelta(days=1 + i % 7), "created_by": "demo"} for i, rid in enumerate(ids)])
    return len(ids)


def build(phone_key: str, year: int, seed: int = 1984) -> tuple[list[dict], list[dict]]:
    """The synthetic register as rows: households (with a `_phones` list)
    and residents (with `_household`, an index into households)."""
    rng = random.Random(seed)
    slots = [(b["code"], b["grid"], unit, floor, f"{floor}0{n}") for b in community.buildings()
             for unit in b["units"] for floor in range(1, FLOORS + 1) for n in range(1, ROOMS_PER_FLOOR + 1)]
    chosen = sorted(rng.sample(range(len(slots)), HOUSEHOLDS))
    places = [slots[i] for i in chosen]
    # Two rooms entered twice, as registers have them: the list flags them.
    places[-1], places[-2] = places[10], places[500]
    households = []
    for building, grid, unit, floor, room in places:
        phones = [_mobile(rng)] + ([f"0571-8{rng.randrange(10**6, 10**7)}"] if rng.random() < 0.3 else [])
        households.append({"grid": grid, "building": building, "unit": unit, "floor": floor, "room": room,
                           "floor_area": round(rng.uniform(38, 92), 2), "tenure": "tenant" if rng.random() < 0.12
                           else "owner", "demo": True, "_phones": phones})
    for a, b in ((3, 40), (77, 1200), (900, 2900)):  # one phone in two households: flagged too
        households[b]["_phones"] = [households[a]["_phones"][0]]

    kinds = (["alone"] * ALONE_ELDERLY + ["couple"] * ELDERLY_COUPLES + ["single"] * YOUNG_SINGLES)
    kinds += ["family"] * (HOUSEHOLDS - len(kinds))
    rng.shuffle(kinds)
    members: list[list[tuple[str, int]]] = [[] for _ in households]  # (relation, age)
    families = [i for i, k in enumerate(kinds) if k == "family"]
    for i, kind in enumerate(kinds):
        if kind == "alone":
            members[i] = [("head", rng.randint(62, 94))]
        elif kind == "couple":
            age = rng.randint(60, 88)
            members[i] = [("head", age), ("spouse", max(60, age + rng.randint(-4, 4)))]
        elif kind == "single":
            members[i] = [("head", rng.randint(22, 58))]
        else:
            age = rng.randint(28, 58)
            members[i] = [("head", age), ("spouse", max(25, min(59, age + rng.randint(-4, 4))))]
    over_60 = round(RESIDENTS * OVER_60_SHARE) - ALONE_ELDERLY - 2 * ELDERLY_COUPLES
    for i in rng.sample(families, over_60):
        members[i].append(("parent", rng.randint(62, 90)))
    young = RESIDENTS - sum(len(m) for m in members)
    for n in range(young):
        ages = (1, 12) if n < CHILDREN_1_12 else (13, 24)
        i = rng.choice(families)
        members[i].append(("grandchild" if members[i][-1][0] == "parent" and rng.random() < 0.2 else "child",
                           rng.randint(*ages)))

    residents = []
    for i, people in enumerate(members):
        alone = kinds[i] in ("alone", "single")
        surname = None
        for relation, age in people:
            name = _name(rng)
            if relation in ("child", "grandchild") and surname:
                name = surname + name[1:]
            surname = surname or name[0]
            phone = _mobile(rng) if 18 <= age and rng.random() < 0.6 else None
            care = None
            if age >= 80 and rng.random() < 0.25:
                care = rng.choice(("partial", "partial", "full"))
            elif age >= 70 and rng.random() < 0.05:
                care = "partial"
            elder_alone = alone and age >= 60
            residents.append({
                "_household": i, "name": name, "sex": rng.choice(contract.SEXES), "birth_year": year - age,
                "relation": relation, "phone": phone,
                "phone_digest": contract.phone_digest(phone, phone_key) if phone else None,
                "lives_alone": alone, "party_member": age >= 18 and rng.random() < 0.08, "care_need": care,
                "disability": rng.choice(DISABILITIES) if rng.random() < 0.012 else None,
                "reach_by": ("hallway_leader" if age >= 80 and rng.random() < 0.3 else
                             "call" if age >= 60 else "text"),
                "emergency_name": _name(rng) if elder_alone else None,
                "emergency_relation": "子女" if elder_alone else None,
                "emergency_phone": _mobile(rng) if elder_alone else None,
                "consent_contact": elder_alone or rng.random() < 0.5,
                "consent_on": date(year, 1, 1 + i % 28) if elder_alone else None,
                "consent_how": "in_person" if elder_alone else None,
            })
    for r in residents:  # consent without date and manner is no consent
        if r["consent_contact"] and not r["consent_on"]:
            r["consent_on"], r["consent_how"] = date(year, 3, 1), "paper"
    for h in households:
        h["_digests"] = [contract.phone_digest(p, phone_key) for p in h["_phones"]]
    return households, residents


def _insert(session, households: list[dict], residents: list[dict]) -> None:
    # render_nulls: rows with an empty field in different places stay one
    # batch (the ORM would split them into thousands of small INSERTs).
    ids = session.scalars(insert(Household).returning(Household.id, sort_by_parameter_order=True),
                          [{k: v for k, v in h.items() if not k.startswith("_")} for h in households]).all()
    session.execute(insert(HouseholdPhone), [
        {"household_id": hid, "phone": p, "phone_digest": d}
        for hid, h in zip(ids, households, strict=True) for p, d in zip(h["_phones"], h["_digests"], strict=True)])
    session.execute(insert(Resident).execution_options(render_nulls=True), [
        {**{k: v for k, v in r.items() if not k.startswith("_")}, "household_id": ids[r["_household"]]}
        for r in residents])


def figures(session, year: int) -> dict:
    """The demo register's headline figures (for the seed's tests and the closing note)."""
    open_residents = select(func.count()).select_from(Resident).where(Resident.closed_at.is_(None))
    total = session.scalar(open_residents)
    over = session.scalar(open_residents.where(Resident.birth_year <= year - 60))
    alone = session.scalar(open_residents.where(Resident.birth_year <= year - 60, Resident.lives_alone.is_(True)))
    return {"households": session.scalar(select(func.count()).select_from(Household)), "residents": total,
            "over_60": over, "over_60_alone": alone}


def remove_demo_rows(session) -> int:
    """Take the demo register out (its visits and check-ins with it)."""
    demo_households = select(Household.id).where(Household.demo.is_(True))
    demo_residents = select(Resident.id).where(Resident.household_id.in_(demo_households))
    plans = select(VisitPlan.id).where(VisitPlan.resident_id.in_(demo_residents))
    session.execute(delete(CheckIn).where(CheckIn.plan_id.in_(plans)))
    session.execute(delete(Visit).where(Visit.plan_id.in_(plans)))
    session.execute(delete(VisitPlan).where(VisitPlan.id.in_(plans)))
    session.execute(delete(Resident).where(Resident.household_id.in_(demo_households)))
    session.execute(delete(HouseholdPhone).where(HouseholdPhone.household_id.in_(demo_households)))
    return session.execute(delete(Household).where(Household.demo.is_(True))).rowcount


@click.command("remove-demo")
def remove_demo():
    """Remove the demo register (make remove-demo)."""
    db = ext.database()
    try:
        removed = remove_demo_rows(db.Session())
        db.Session.commit()
    finally:
        db.Session.remove()
    click.echo(f"community: demo households removed: {removed}")
