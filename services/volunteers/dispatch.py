"""Dispatch: what matching does with a request — take it in (and book a
station slot, stations.py, or escalate, escalation.py, where that is its
way), offer it to volunteers (sequential or broadcast), take acceptances
and declines, follow a task to completion (its hours go to the time bank,
timebank.py), cancel, and carry out staff actions and delivery failures.
The Dispatcher also holds what every step shares: the session, the outbox,
the settings and one clock (`now`).

Transactions, the same in every matching operation (dispatch, stations,
escalation, jobs, timebank): an operation stages its changes and the
events they cause in the caller's session (outbox) — it may flush, and
may undo a savepoint of its own when a unique index refuses a row, but
never commits or rolls back the caller's transaction. The view or task
that calls it commits once. An acceptance that loses a race (closed, full,
taken) returns that outcome with its partial work staged, and the caller
rolls back instead of committing. Acceptance is atomic: conditional
UPDATEs, a row lock and unique constraints decide races, never a
read-then-write."""
from __future__ import annotations

import contextlib
import logging
from datetime import date, datetime, timedelta, timezone

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from services.common import clock, contract
from services.common import extensions as ext
from services.common.clock import SHANGHAI, utcnow

from . import config, engine, registry, stations
from .escalation import LEVELS, escalate
from .models import (
    Assignment,
    AvailabilityWindow,
    Booking,
    Building,
    DayOff,
    Escalation,
    HoursEntry,
    Offer,
    ServiceRequest,
    Volunteer,
    VolunteerSkill,
    new_token,
    token_hash,
)
from .timebank import hours_between

log = logging.getLogger(__name__)

OPEN_REQUEST = ("matching", "offered")


def place_of(building: Building, unit: str | None) -> engine.Place:
    return engine.Place(building.code, unit, building.grid)


class Dispatcher:
    def __init__(self, session, outbox, cfg: dict, now: datetime | None = None):
        self.session = session
        self.outbox = outbox
        self.cfg = cfg
        self.now = now or utcnow()
        self.weights = engine.Weights(**cfg["MATCH_WEIGHTS"])
        self.base_url = cfg["VOLUNTEERS_URL"]

    # --- arrival ---

    def receive(self, data: dict) -> ServiceRequest | None:
        """volunteers.request_submitted: remember the request, then book, offer or escalate."""
        request_id = str(data["request_id"])
        known = self.session.get(ServiceRequest, request_id)
        if known is not None:
            # Sent again: intake never heard back, so our answer was lost. Say it again.
            self.retell(known)
            return None
        home = self.session.get(Building, data["building"])
        if home is None:
            raise ValueError("unknown building")  # seeding lags behind intake: retried
        pol = config.policy(self.cfg, data["category"])
        req = ServiceRequest(
            id=request_id, category=data["category"], summary=data["summary"], building=data["building"],
            unit=data["unit"], masked_phone=data["masked_phone"], mode=data["mode"],
            window_start=data["window_start"], window_end=data["window_end"], urgency=data["urgency"],
            elderly=data["elderly"], disability=data["disability"], requester_digest=data["requester_digest"],
            programme_ref=data["programme_ref"], status="matching", received_at=self.now, escalation_level=0,
            home=home,  # already read: ranking need not read it again
            offers=[],  # known empty: dispatch need not ask the database who was offered it
        )
        req.accept_by = self.deadline(req, self.now, timedelta(minutes=pol["accept_minutes"]))
        self.session.add(req)
        staff_only = contract.CATEGORY_BY_CODE[req.category].staff_only
        routine = not (data["first_to"] or staff_only or req.mode == "station")
        if not routine:
            self.session.flush()
        # A routine request is ranked on volunteers and offers alone, so it
        # waits to be written with its first offer, in its first status, by
        # one flush: an UPDATE of its status and a unit of work less
        # (cProfile of bench.matching.match_path).
        with self.session.no_autoflush if routine else contextlib.nullcontext():
            if data["first_to"]:
                # A programme's request for a leader: the hallway leader who visits,
                # the office for an emergency a visitor found.
                escalate(self, req, "visit" if req.category == "visit" else "welfare",
                         level=LEVELS[data["first_to"]])
            elif staff_only:
                escalate(self, req, "welfare" if req.category == "welfare" else "staff_only", level=2)
            elif req.mode == "station" and stations.book(self, req):
                pass
            elif not (data["preferred_volunteer_id"] and self.offer_to(req, data["preferred_volunteer_id"])):
                self.dispatch(req)
        return req

    def offer_to(self, req: ServiceRequest, volunteer_id: int) -> Offer | None:
        """Offer to one named volunteer first (a visit's paired volunteer,
        结对) when they qualify and have room; otherwise the usual ranking."""
        facts = self.request_facts(req)
        volunteers, tasks = self.free_volunteers(facts, frozenset(), (Volunteer.id == volunteer_id,))
        pol = config.policy(self.cfg, req.category)
        found = engine.rank(facts, volunteers, self.now, self.weights, limit=1, tasks=tasks)
        return self.make_offer(req, found[0], pol) if found else None

    def deadline(self, req: ServiceRequest, start: datetime, delta: timedelta) -> datetime:
        """An urgent request's clock runs day and night; an ordinary one's
        stands still in the community's quiet hours, when its messages wait
        too: an offer made at 22:00 is answered after the volunteer has seen
        it, and nobody is escalated to in the night about a haircut."""
        if req.urgency == "urgent":
            return start + delta
        return clock.add_outside(start, delta, *self.cfg["QUIET_HOURS"])

    def retell(self, req: ServiceRequest) -> None:
        """Tell intake the request's current status once more."""
        live = self.session.scalar(select(Assignment).where(
            Assignment.request_id == req.id, Assignment.status != "cancelled"))
        booking = self.session.get(Booking, live.booking_id) if live and live.booking_id else None
        self.tell_intake(
            req, req.status, actor="matching",
            volunteer_name=live.volunteer.display_name if live else None,
            appointment_at=booking.starts_at if booking else None,
            place=f"{booking.session.station.name}（{booking.session.station.place}）" if booking else None)

    # --- offers ---

    def request_facts(self, req: ServiceRequest) -> engine.RequestFacts:
        return engine.RequestFacts(
            category=req.category, place=place_of(req.home, req.unit), window_start=req.window_start,
            window_end=req.window_end, urgent=req.urgency == "urgent", vulnerable=req.elderly or req.disability,
            requester_digest=req.requester_digest,
            credential_required=contract.CATEGORY_BY_CODE[req.category].credential,
        )

    FACT_COLUMNS = (Volunteer.id, Volunteer.capacity, Volunteer.active_tasks, Volunteer.building, Volunteer.unit,
                    Building.grid, Volunteer.last_task_at, Volunteer.offers_count, Volunteer.accepts_count,
                    Volunteer.rating_sum, Volunteer.rating_count, Volunteer.phone_digest, VolunteerSkill.verified)

    def volunteers_for(self, category: str, where=None) -> list[engine.VolunteerFacts]:
        """Every active volunteer with the skill (and meeting `where`, if
        given), busy or not, as plain rows with their windows and days off:
        for a named volunteer, and to tell "nobody could" from "everybody
        is busy" when nobody is free."""
        stmt = (
            select(*self.FACT_COLUMNS)
            .join(VolunteerSkill, VolunteerSkill.volunteer_id == Volunteer.id)
            .join(Building, Building.code == Volunteer.building)
            .where(VolunteerSkill.category == category, Volunteer.active.is_(True))
        )
        return self._facts(category, self.session.execute(stmt if where is None else stmt.where(where)).all())

    def _facts(self, category: str, rows, span: tuple[date, date] | None = None,
               calendar: bool = True) -> list[engine.VolunteerFacts]:
        """Rows of FACT_COLUMNS as the engine's VolunteerFacts, with their
        weekly windows and days off (`calendar`; of the days off only those
        from span[0] to span[1], the only days the engine looks at, when a
        span is given)."""
        ids = [r.id for r in rows]
        windows: dict[int, list[engine.Window]] = {}
        days_off: dict[int, set] = {}
        if ids and calendar:
            for vid, weekday, start, end in self.session.execute(
                    select(AvailabilityWindow.volunteer_id, AvailabilityWindow.weekday, AvailabilityWindow.start_time,
                           AvailabilityWindow.end_time).where(AvailabilityWindow.volunteer_id.in_(ids))):
                windows.setdefault(vid, []).append(engine.Window(weekday, start, end))
            off = select(DayOff.volunteer_id, DayOff.day).where(DayOff.volunteer_id.in_(ids))
            if span is not None:
                off = off.where(DayOff.day.between(*span))
            for vid, day in self.session.execute(off):
                days_off.setdefault(vid, set()).add(day)
        skill = frozenset({category})
        return [engine.VolunteerFacts(
            id=r.id, skills=skill, active=True, capacity=r.capacity, active_tasks=r.active_tasks,
            place=engine.Place(r.building, r.unit, r.grid), verified=skill if r.verified else frozenset(),
            windows=tuple(windows.get(r.id, ())), days_off=frozenset(days_off.get(r.id, ())),
            last_task_at=r.last_task_at, offers=r.offers_count, accepts=r.accepts_count,
            rating=r.rating_sum / r.rating_count if r.rating_count else None, phone_digest=r.phone_digest,
        ) for r in rows]

    def tiers(self, place: engine.Place) -> list[tuple]:
        """Where to look, nearest first (the engine's nearness): the
        request's stairwell, the rest of its building, the rest of its
        grid, the rest of the community. Each is a list of conditions."""
        rest_of_building = [Volunteer.building == place.building]
        tiers = []
        if place.unit:
            tiers.append((Volunteer.building == place.building, Volunteer.unit == place.unit))
            rest_of_building.append(or_(Volunteer.unit.is_(None), Volunteer.unit != place.unit))
        return tiers + [tuple(rest_of_building), (Building.grid == place.grid, Volunteer.building != place.building),
                        (Building.grid != place.grid,)]

    def free_volunteers(self, facts: engine.RequestFacts, asked: frozenset[int], where=()) \
            -> tuple[list[engine.VolunteerFacts], dict[int, int]]:
        """Volunteers the database can already tell might take the request
        now — the skill (verified where it needs a credential), active, not
        the requester, not asked yet, and room for one more counting their
        unanswered offers (an unanswered offer holds a place) — meeting
        `where`; and how busy each is. The engine checks the rest
        (availability) and ranks them."""
        pending = (select(func.count()).where(Offer.volunteer_id == Volunteer.id, Offer.status == "open")
                   .scalar_subquery())
        busy = Volunteer.active_tasks + pending
        stmt = (
            select(*self.FACT_COLUMNS, busy.label("busy"))
            .join(VolunteerSkill, VolunteerSkill.volunteer_id == Volunteer.id)
            .join(Building, Building.code == Volunteer.building)
            .where(VolunteerSkill.category == facts.category, Volunteer.active.is_(True), busy < Volunteer.capacity,
                   *where)
        )
        if facts.credential_required:
            stmt = stmt.where(VolunteerSkill.verified.is_(True))
        if facts.requester_digest:
            stmt = stmt.where(or_(Volunteer.phone_digest.is_(None), Volunteer.phone_digest != facts.requester_digest))
        if asked:
            stmt = stmt.where(Volunteer.id.not_in(asked))
        rows = self.session.execute(stmt).all()
        span = None
        if facts.window_start is not None or facts.window_end is not None:
            start = (facts.window_start or facts.window_end - timedelta(hours=1)).astimezone(SHANGHAI)
            end = (facts.window_end or start + timedelta(hours=1)).astimezone(SHANGHAI)
            span = (start.date(), end.date())
        # Without a requested window the engine reads neither windows nor days off.
        return self._facts(facts.category, rows, span, calendar=span is not None), {r.id: r.busy for r in rows}

    def best_free(self, facts: engine.RequestFacts, asked: frozenset[int], want: int) -> list[engine.Candidate]:
        """The best `want` volunteers not yet asked who can take the request
        now. When nearness decides (anyone nearer outranks everyone
        farther), tier by tier, nearest first, stopping at the first tier
        by which `want` are found: a request reads its stairwell's
        volunteers, not the community's (matching was the costliest step of
        a request, and reading every volunteer with the skill most of it)."""
        found: list[engine.VolunteerFacts] = []
        tasks: dict[int, int] = {}
        candidates: list[engine.Candidate] = []
        for where in self.tiers(facts.place) if self.weights.nearness_decides else [()]:
            more, busy = self.free_volunteers(facts, asked, where)
            if not more:
                continue
            found += more
            tasks |= busy
            candidates = engine.rank(facts, found, self.now, self.weights, exclude=asked, limit=want, tasks=tasks)
            if len(candidates) == want:
                break
        return candidates

    def dispatch(self, req: ServiceRequest) -> list[Offer]:
        """Offer to the best candidates not yet asked (one, or the top K for
        broadcast). Nobody qualified: escalate. Qualified but all busy: wait
        (status matching) for the sweep; everybody asked: escalate."""
        pol = config.policy(self.cfg, req.category)
        facts = self.request_facts(req)
        asked = frozenset(o.volunteer_id for o in req.offers)
        want = pol["broadcast_k"] if pol["policy"] == "broadcast" else 1
        candidates = self.best_free(facts, asked, want)
        if not candidates:
            qualified = [v for v in self.volunteers_for(req.category) if engine.qualified(facts, v)]
            if not qualified:
                escalate(self, req, "no_candidate")
            elif all(v.id in asked for v in qualified):
                escalate(self, req, "all_declined")
            else:
                req.status = "matching"  # the sweep offers it when someone has room
            return []
        return [self.make_offer(req, c, pol) for c in candidates]

    def make_offer(self, req: ServiceRequest, cand: engine.Candidate, pol: dict) -> Offer:
        # Two columns and a counter, not the whole volunteer: loading one
        # brings their skills, windows and days off too (4 queries a offer).
        vid = cand.volunteer_id
        channels, language = self.session.execute(
            select(Volunteer.channels, Volunteer.language).where(Volunteer.id == vid)).one()
        # The raw token lives only in this message's link; the offer keeps its hash.
        token = new_token()
        offer = Offer(request=req, volunteer_id=vid, reason=" ".join(cand.reasons), created_at=self.now,
                      token_hash=token_hash(token),
                      expires_at=self.deadline(req, self.now, timedelta(minutes=pol["offer_minutes"])))
        first = req.status != "offered"
        req.status = "offered"  # before the flush: a new request is written offered
        self.session.add(offer)
        self.session.flush()
        self.session.execute(update(Volunteer).where(Volunteer.id == vid)
                             .values(offers_count=Volunteer.offers_count + 1))
        self.notify(f"offer:{offer.id}", f"volunteer:{vid}", channels, language, "offer",
                    urgent=req.urgency == "urgent", reply=True, context={
                        # Before acceptance a volunteer learns the building only.
                        "category": req.category,
                        "building": req.home.name,
                        "masked_phone": req.masked_phone,
                        "summary": req.summary[:200],
                        "window_start": req.window_start.isoformat() if req.window_start else "",
                        "window_end": req.window_end.isoformat() if req.window_end else "",
                        "offer_url": f"{self.base_url}/offers/{token}",
                    })
        if first:
            self.tell_intake(req, "offered", actor="matching")
        log.info("offer made", extra={"service_request_id": req.id, "offer_id": offer.id, "volunteer_id": vid})
        return offer

    def accept(self, offer: Offer) -> str:
        """Take an offer: accepted, full (at capacity), closed (no longer
        open) or taken (someone else won a broadcast). Anything but
        accepted is a lost race: the caller rolls back, so that no claim
        or capacity of it stays."""
        # Acceptances of one request queue up on its row (PostgreSQL; SQLite
        # serialises writers anyway): the winner withdraws the others'
        # offers without deadlocking against their claims.
        self.session.execute(select(ServiceRequest.id).where(ServiceRequest.id == offer.request_id)
                             .with_for_update())
        # Past its time an offer is closed even before the sweep marks it
        # expired (the sweep then offers the request onwards, as for any expiry).
        claimed = self.session.execute(
            update(Offer).where(Offer.id == offer.id, Offer.status == "open",
                                or_(Offer.expires_at.is_(None), Offer.expires_at > self.now))
            .values(status="accepted", responded_at=self.now)
        ).rowcount
        if not claimed:
            return "closed"
        if not self._book_capacity(offer.volunteer_id):
            return "full"
        try:
            with self.session.begin_nested():
                assignment = self.new_assignment(offer.request_id, offer.volunteer_id, offer_id=offer.id,
                                                 actor=f"volunteer:{offer.volunteer_id}")
        except IntegrityError:  # another acceptance made the request's one live assignment
            return "taken"
        req = self.session.get(ServiceRequest, offer.request_id)
        vol = self.session.get(Volunteer, offer.volunteer_id)
        vol.accepts_count += 1
        req.status = "assigned"
        self.withdraw_offers(req, keep=offer.id)
        self.tell_intake(req, "assigned", actor=f"volunteer:{vol.id}", volunteer_name=vol.display_name)
        log.info("offer accepted", extra={"service_request_id": req.id, "offer_id": offer.id, "volunteer_id": vol.id,
                                          "assignment_id": assignment.id})
        return "accepted"

    def _book_capacity(self, volunteer_id: int) -> bool:
        return bool(self.session.execute(
            update(Volunteer)
            .where(Volunteer.id == volunteer_id, Volunteer.active.is_(True),
                   Volunteer.active_tasks < Volunteer.capacity)
            .values(active_tasks=Volunteer.active_tasks + 1)
        ).rowcount)

    def _free_capacity(self, volunteer_id: int) -> None:
        self.session.execute(
            update(Volunteer).where(Volunteer.id == volunteer_id, Volunteer.active_tasks > 0)
            .values(active_tasks=Volunteer.active_tasks - 1)
        )

    def new_assignment(self, request_id, volunteer_id, actor, offer_id=None, booking_id=None) -> Assignment:
        req = self.session.get(ServiceRequest, request_id)
        pol = config.policy(self.cfg, req.category)
        assignment = Assignment(request_id=request_id, volunteer_id=volunteer_id, offer_id=offer_id,
                                booking_id=booking_id, counts_capacity=booking_id is None, actor=actor,
                                created_at=self.now, complete_by=self.now + timedelta(hours=pol["complete_hours"]))
        self.session.add(assignment)
        self.session.flush()
        return assignment

    def decline(self, offer: Offer, reason: str = "") -> bool:
        claimed = self.session.execute(
            update(Offer).where(Offer.id == offer.id, Offer.status == "open")
            .values(status="declined", responded_at=self.now, decline_reason=reason[:200])
        ).rowcount
        if not claimed:
            return False
        self.session.expire_all()
        self._next_if_unanswered(self.session.get(ServiceRequest, offer.request_id))
        return True

    def _next_if_unanswered(self, req: ServiceRequest) -> None:
        if req.status in OPEN_REQUEST and not any(o.status == "open" for o in req.offers):
            self.dispatch(req)

    def withdraw_offers(self, req: ServiceRequest, keep: int | None = None, why: str = "taken") -> None:
        for other in self.session.scalars(select(Offer).where(Offer.request_id == req.id, Offer.status == "open")):
            if other.id == keep:
                continue
            other.status, other.responded_at = "withdrawn", self.now
            vol = other.volunteer
            self.notify(f"withdrawn:{other.id}", f"volunteer:{vol.id}", vol.channels, vol.language,
                        "offer_withdrawn", context={"category": req.category, "building": req.home.name,
                                                    "reason": why})

    # --- the task itself ---

    def start(self, assignment: Assignment) -> bool:
        if assignment.status != "active":
            return False
        assignment.status, assignment.started_at = "started", self.now
        assignment.request.status = "in_progress"
        self.tell_intake(assignment.request, "in_progress", actor=f"volunteer:{assignment.volunteer_id}")
        return True

    def complete(self, assignment: Assignment, minutes: int | None, note: str,
                 outcome: str | None = None) -> HoursEntry | None:
        if assignment.status not in ("active", "started"):
            return None
        started = assignment.started_at or (self.now - timedelta(minutes=minutes or 30))
        assignment.status, assignment.completed_at = "completed", self.now
        assignment.minutes, assignment.note = minutes, note[:500]
        if assignment.counts_capacity:
            self._free_capacity(assignment.volunteer_id)
        vol = assignment.volunteer
        vol.last_task_at = self.now
        req = assignment.request
        req.status = "completed"
        entry = HoursEntry(volunteer_id=vol.id, assignment_id=assignment.id, hours=hours_between(started, self.now),
                           completed_at=self.now)
        self.session.add(entry)
        self.tell_intake(req, "completed", actor=f"volunteer:{vol.id}", note=note[:500])
        if req.programme_ref and outcome:
            self.outbox.emit(self.session, contract.VISIT_OUTCOME, {
                "visit_ref": req.programme_ref, "outcome": outcome, "note": note[:500], "actor": f"volunteer:{vol.id}"})
        return entry

    def cancel(self, req: ServiceRequest, actor: str, reason: str, final: str = "cancelled") -> None:
        """Withdraw open offers, free the volunteer, release a station slot
        (withdrawn by the resident, or cancelled or closed by staff)."""
        if req.status in ("cancelled", "completed", "closed"):
            return
        self.withdraw_offers(req, why="cancelled")
        for assignment in self.session.scalars(select(Assignment).where(
                Assignment.request_id == req.id, Assignment.status.in_(("active", "started")))):
            self._cancel_assignment(assignment, req)
        req.status = final
        log.info(f"request {final}", extra={"service_request_id": req.id, "actor": actor})

    # --- staff actions from the console: moves of offers and assignments,
    # and a volunteer switched on or off ---

    def staff_action(self, data: dict) -> None:
        """What a staff member decided in the console (intake's outbox)."""
        action, actor = data["action"], data["actor"]
        if action == "register":
            registry.register(self.session, data, self.cfg["PHONE_DIGEST_KEY"], self.now)
            return
        if action == "update":
            registry.update(self.session, data, self.cfg["PHONE_DIGEST_KEY"], self.now)
            return
        if action in contract.STAFF_VOLUNTEER_ACTIONS:
            vol = self.session.get(Volunteer, data["volunteer_id"])
            if vol is None:
                raise LookupError("no such volunteer")
            if action != "activate" and vol.active:
                vol.end_sessions()  # a deactivated volunteer's portal sessions end now
            vol.active = action == "activate"
            log.info(f"volunteer {action}", extra={"volunteer_id": vol.id, "actor": actor})
            return
        req = self.session.get(ServiceRequest, str(data["request_id"]))
        if req is None:
            raise LookupError("request not received yet")  # retried: the submission may be on its way
        refused = None
        if action == "assign":
            outcome = self.staff_assign(req, data["volunteer_id"], actor=actor)
            refused = None if outcome == "assigned" else outcome
        elif action == "escalate":
            if req.status in ("cancelled", "closed"):
                refused = "closed"
            else:
                escalate(self, req, reason=data["reason"], level=data["level"])
        elif action == "close":
            self.cancel(req, actor=actor, reason=data["note"], final="closed")
        if refused:
            self.outbox.emit(self.session, contract.STAFF_ACTION_REFUSED, {
                "request_id": req.id, "action": action, "actor": actor, "reason": refused})
            log.info("staff action refused", extra={"service_request_id": req.id, "action": action, "reason": refused})

    def _cancel_assignment(self, assignment: Assignment, req: ServiceRequest) -> None:
        assignment.status = "cancelled"
        if assignment.counts_capacity:
            self._free_capacity(assignment.volunteer_id)
        if assignment.booking_id:
            self.session.execute(update(Booking).where(Booking.id == assignment.booking_id)
                                 .values(status="cancelled"))
        vol = assignment.volunteer
        self.notify(f"cancelled:{assignment.id}", f"volunteer:{vol.id}", vol.channels, vol.language,
                    "offer_withdrawn", context={"category": req.category, "building": req.home.name,
                                                "reason": "cancelled"})
        self.session.flush()  # frees the request's one live assignment for a new one

    def staff_assign(self, req: ServiceRequest, volunteer_id: int, actor: str) -> str:
        """Staff reassign by hand: assigned, full, inactive or closed."""
        if req.status in ("cancelled", "completed"):
            return "closed"
        vol = self.session.get(Volunteer, volunteer_id)
        if vol is None or not vol.active:
            return "inactive"
        if not self._book_capacity(volunteer_id):  # changed no row: nothing to undo
            return "full"
        self.withdraw_offers(req, why="reassigned")
        for current in self.session.scalars(select(Assignment).where(
                Assignment.request_id == req.id, Assignment.status.in_(("active", "started")))).all():
            self._cancel_assignment(current, req)
        self.new_assignment(req.id, volunteer_id, actor=actor)
        req.status = "assigned"
        self.tell_intake(req, "assigned", actor=actor, volunteer_name=vol.display_name)
        return "assigned"

    # --- what comes back: residents' feedback, deliveries that failed ---

    def feedback(self, request_id: str, rating: int, thanks: bool, comment: str) -> None:
        assignment = self.session.scalar(select(Assignment).where(Assignment.request_id == request_id))
        if assignment is None:
            return
        vol = assignment.volunteer
        vol.rating_sum += rating
        vol.rating_count += 1
        self.notify(f"thanks:{request_id}", f"volunteer:{vol.id}", vol.channels, vol.language, "thanks",
                    context={"category": assignment.request.category, "rating": rating, "thanks": thanks,
                             "comment": comment[:200]})

    def delivery_failed(self, data: dict) -> None:
        """An offer that cannot reach its volunteer is as good as declined:
        ask the next one now rather than after the offer's time. An
        escalation that cannot reach its leader goes one level up."""
        kind, _, ref = data["dedupe_key"].partition(":")
        if kind == "offer" and ref.isdigit():
            offer = self.session.get(Offer, int(ref))
            if offer is not None and offer.status == "open":
                offer.status, offer.responded_at, offer.decline_reason = "expired", self.now, "unreachable"
                self.session.flush()
                self._next_if_unanswered(offer.request)
        elif kind == "escalation" and ref.isdigit():
            esc = self.session.get(Escalation, int(ref))
            req = self.session.get(ServiceRequest, esc.request_id) if esc else None
            if req is not None and req.status == "escalated" and req.escalation_level == esc.level:
                escalate(self, req, "unreachable", level=esc.level + 1)

    # --- events ---

    def tell_intake(self, req, status, actor, note="", volunteer_name=None, appointment_at=None, place=None):
        self.outbox.emit(self.session, contract.STATUS_CHANGED, {
            "request_id": req.id, "status": status, "actor": actor, "note": note,
            "volunteer_name": volunteer_name, "place": place,
            "appointment_at": appointment_at.astimezone(timezone.utc) if appointment_at else None,
        })

    def notify(self, key, recipient, channels, language, template, context, urgent=False, reply=False):
        """`reply`: notify tells us (delivery_failed) if it cannot get this one out."""
        self.outbox.emit(self.session, contract.NOTIFY_SEND, {
            "dedupe_key": key, "recipient": recipient, "channels": list(channels or []), "language": language,
            "template": template, "context": context, "urgent": urgent,
            "reply_to": "volunteers" if reply else None,
        })


def dispatcher(session) -> Dispatcher:
    """The service's dispatcher, in a request's or a task's app context."""
    return Dispatcher(session, ext.outbox(), current_app.config)
