"""The matching engine, on its own: examples, then properties (hypothesis)."""
from datetime import date, datetime, time, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from services.volunteers import engine
from services.volunteers.engine import Place, RequestFacts, VolunteerFacts, Weights, Window

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)  # Friday 10:00 in Hangzhou
HOME = Place("3", "1", "G1")
SAT = datetime(2026, 11, 28, 1, 0, tzinfo=timezone.utc)  # Saturday 09:00 in Hangzhou


def vol(id, skills=("haircut",), place=HOME, capacity=1, active_tasks=0, active=True, **kw):
    return VolunteerFacts(id, frozenset(skills), active, capacity, active_tasks, place, **kw)


def req(**kw):
    return RequestFacts(kw.pop("category", "haircut"), kw.pop("place", HOME), **kw)


def test_nearness_orders_the_tiers_and_ties_fall_to_the_lower_id():
    volunteers = [
        vol(1, skills=("sharpening",)), vol(2, active=False), vol(3, active_tasks=1),
        vol(4, place=Place("40", "1", "G4")), vol(5, place=Place("5", "2", "G1")),
        vol(6, place=Place("3", "2", "G1")), vol(8), vol(9),
    ]
    ranked = engine.rank(req(), volunteers, NOW)
    assert [c.volunteer_id for c in ranked] == [8, 9, 6, 5, 4]
    assert ranked[0].reasons[0] == "same_stairwell" and ranked[-1].reasons[0] == "same_community"


def test_soft_score_prefers_free_rested_reliable_well_rated():
    base = dict(capacity=2)
    busy = vol(1, active_tasks=1, **base)
    recent = vol(2, last_task_at=NOW - timedelta(hours=1), **base)
    flaky = vol(3, offers=10, accepts=1, **base)
    poorly_rated = vol(4, rating=2.0, **base)
    best = vol(5, offers=10, accepts=10, rating=5.0, **base)
    order = [c.volunteer_id for c in engine.rank(req(), [busy, recent, flaky, poorly_rated, best], NOW)]
    assert order[0] == 5
    assert set(order) == {1, 2, 3, 4, 5}


def test_credentials_windows_days_off_and_the_requester():
    doctor = vol(1, skills=("health_check",))
    verified_doctor = vol(2, skills=("health_check",), verified=frozenset({"health_check"}))
    gated = req(category="health_check", credential_required=True)
    assert [c.volunteer_id for c in engine.rank(gated, [doctor, verified_doctor], NOW)] == [2]

    saturday_morning = vol(3, windows=(Window(5, time(9), time(11)),))
    sunday_only = vol(4, windows=(Window(6, time(9), time(11)),))
    off_that_day = vol(5, days_off=frozenset({date(2026, 11, 28)}))
    any_time = vol(6)
    wanted = req(window_start=SAT, window_end=SAT + timedelta(hours=1))
    ids = {c.volunteer_id for c in engine.rank(wanted, [saturday_morning, sunday_only, off_that_day, any_time], NOW)}
    assert ids == {3, 6}

    me = vol(7, phone_digest="abc")
    assert engine.rank(req(requester_digest="abc"), [me], NOW) == []


# --- properties ---

SKILLS = ("haircut", "sharpening", "health_check")
places = st.builds(Place, st.sampled_from(["1", "2", "3", "4"]), st.sampled_from(["1", "2", None]),
                   st.sampled_from(["G1", "G2"])).map(lambda p: Place(p.building, p.unit, "G1" if p.building in "12"
                                                                           else "G2"))
windows = st.lists(st.builds(Window, st.integers(0, 6), st.sampled_from([time(8), time(9), time(14)]),
                             st.sampled_from([time(12), time(18)])), max_size=2)


@st.composite
def volunteers(draw, id):
    skills = draw(st.frozensets(st.sampled_from(SKILLS), min_size=1))
    capacity = draw(st.integers(1, 3))
    return VolunteerFacts(
        id=id, skills=skills, active=draw(st.booleans()), capacity=capacity,
        active_tasks=draw(st.integers(0, capacity)), place=draw(places),
        verified=draw(st.frozensets(st.sampled_from(SKILLS))), windows=tuple(draw(windows)),
        days_off=draw(st.frozensets(st.sampled_from([date(2026, 11, 28), date(2026, 11, 29)]))),
        last_task_at=draw(st.none() | st.just(NOW - timedelta(days=3))),
        offers=draw(st.integers(0, 5)), accepts=0, rating=draw(st.none() | st.floats(1, 5)),
    )


crowds = st.integers(0, 25).flatmap(lambda n: st.tuples(*[volunteers(i + 1) for i in range(n)]))


@st.composite
def requests(draw):
    category = draw(st.sampled_from(SKILLS))
    start = draw(st.none() | st.sampled_from([SAT, SAT + timedelta(days=1, hours=5)]))
    return RequestFacts(category, draw(places), start, start + timedelta(hours=2) if start else None,
                        credential_required=category == "health_check")


@settings(max_examples=100, deadline=None)
@given(requests(), crowds)
def test_never_returns_an_ineligible_volunteer(request, crowd):
    by_id = {v.id: v for v in crowd}
    for cand in engine.rank(request, crowd, NOW):
        v = by_id[cand.volunteer_id]
        assert v.active and request.category in v.skills and v.active_tasks < v.capacity
        assert not request.credential_required or request.category in v.verified
        assert engine.available(v, request.window_start, request.window_end)


@settings(max_examples=100, deadline=None)
@given(requests(), crowds, st.randoms())
def test_ranking_is_stable_under_any_input_order(request, crowd, rnd):
    shuffled = list(crowd)
    rnd.shuffle(shuffled)
    assert engine.rank(request, crowd, NOW) == engine.rank(request, shuffled, NOW)


@settings(max_examples=100, deadline=None)
@given(requests(), volunteers(1))
def test_nearer_beats_farther_when_all_else_is_equal(request, v):
    v = VolunteerFacts(**{**v.__dict__, "active": True, "active_tasks": 0, "skills": frozenset({request.category}),
                          "verified": frozenset({request.category}), "windows": (), "days_off": frozenset()})
    near = VolunteerFacts(**{**v.__dict__, "id": 2, "place": request.place})
    far = VolunteerFacts(**{**v.__dict__, "id": 1, "place": Place("99", "1", "G9")})
    ranked = engine.rank(request, [far, near], NOW, Weights())
    assert [c.volunteer_id for c in ranked] == [2, 1]
