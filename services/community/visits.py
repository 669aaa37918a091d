"""Visits to residents living alone or needing care (探访), and the daily
check-in (报平安).

A plan says how often a resident is visited and by whom. When a visit
comes due it becomes a help request (requests.programme_request) that
intake, matching and notify carry like any other: offered to the paired
volunteer first or to volunteers near, or handed to the stairwell's hallway
leader. The visitor's outcome comes back as community.visit_outcome:
"needs attention" and two "nobody home" in a row become a welfare request
for the grid leader; an emergency goes to the office at once, urgent. A
visit nobody recorded by the day after its due date goes up the grid chain
the same way. A resident who chose the daily check-in and has not checked
in by the configured hour gets a visitor sent that day.

Transactions: operations stage rows and outbox events in the caller's
session and never commit; the task or view commits once."""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta

from sqlalchemy import exists, select

from services.common import contract
from services.common.auth import StaffClaims
from services.common.clock import SHANGHAI, utcnow

from .models import RHYTHMS, CheckIn, Household, Resident, Visit, VisitPlan
from .register import allows

log = logging.getLogger(__name__)

# How many plans one beat tick turns into visits at most: a backlog after a
# long outage is worked off over a few ticks instead of one long transaction.
BATCH = 200


def local_today(now: datetime) -> date:
    return now.astimezone(SHANGHAI).date()


class Visits:
    def __init__(self, session, outbox, cfg: dict, now: datetime | None = None):
        self.session = session
        self.outbox = outbox
        self.cfg = cfg
        self.now = now or utcnow()
        self.today = local_today(self.now)

    # --- plans ---

    def set_plan(self, data: dict, acting: StaffClaims) -> tuple[VisitPlan | None, dict | None]:
        """Create or change a resident's plan: (plan, None) or (None, errors),
        within the asker's scope."""
        actor = acting.actor
        resident = self.session.get(Resident, data["resident_id"])
        if resident is None or resident.closed_at is not None:
            return None, {"resident_id": ["No such resident in the register."]}
        if not allows(acting, resident.household):
            return None, {"resident_id": ["This resident is outside your area."]}
        plan = self.session.scalar(select(VisitPlan).where(VisitPlan.resident_id == resident.id))
        if plan is None:
            # The first visit is due today: a new plan means someone should go now.
            plan = VisitPlan(resident_id=resident.id, next_due=self.today, created_by=actor)
            self.session.add(plan)
        plan.rhythm, plan.visitor = data["rhythm"], data["visitor"]
        plan.volunteer_id = data["volunteer_id"] if data["visitor"] == "paired_volunteer" else None
        plan.preferred_times = data.get("preferred_times") or None
        plan.active = data["active"]
        if data.get("checkin_token_digest"):
            plan.checkin_token_digest = data["checkin_token_digest"]  # the old link stops working
        plan.checkin_daily = data["checkin_daily"]
        self.session.flush()
        return plan, None

    # --- visits coming due ---

    def come_due(self) -> int:
        """Every active plan whose next visit is due today or earlier gets
        that visit, due today and sent as a request; the plan moves on by its
        rhythm from today (after an outage, one visit goes, not a pile of them)."""
        plans = self.session.scalars(
            select(VisitPlan).where(VisitPlan.active.is_(True), VisitPlan.next_due <= self.today)
            .order_by(VisitPlan.next_due, VisitPlan.id).limit(BATCH).with_for_update(skip_locked=True)).all()
        for plan in plans:
            self.open_visit(plan, self.today, "scheduled")
            plan.next_due = self.today + timedelta(days=RHYTHMS[plan.rhythm])
        return len(plans)

    def open_visit(self, plan: VisitPlan, due_on: date, reason: str) -> Visit | None:
        """A visit and the request that carries it; None when that visit exists already."""
        if self.session.scalar(select(Visit.id).where(Visit.plan_id == plan.id, Visit.due_on == due_on,
                                                      Visit.reason == reason)) is not None:
            return None
        visit = Visit(plan_id=plan.id, due_on=due_on, reason=reason, created_at=self.now)
        self.session.add(visit)
        self.session.flush()
        urgent = reason == "missed_checkin"
        self.ask(plan.resident, f"visit:{visit.id}", "visit", reason, urgent, plan=plan,
                 first_to="hallway" if plan.visitor == "hallway_leader" else None)
        log.info("visit due", extra={"visit_id": visit.id, "plan_id": plan.id, "reason": reason})
        return visit

    def ask(self, resident: Resident, ref: str, category: str, reason: str, urgent: bool,
            plan: VisitPlan | None = None, first_to: str | None = None) -> None:
        """Stage a programme request for `resident` (intake words it)."""
        home: Household = resident.household
        start = datetime.combine(self.today, time(8, 0), SHANGHAI)
        self.outbox.emit(self.session, contract.PROGRAMME_REQUEST, {
            "ref": ref, "category": category, "reason": reason, "urgency": "urgent" if urgent else "normal",
            "building": home.building, "unit": home.unit, "room": home.room,
            "contact_name": resident.name, "contact_phone": self.phone_for(resident),
            "elderly": self.today.year - resident.birth_year >= 80, "disability": bool(resident.disability),
            "preferred_volunteer_id": plan.volunteer_id if plan is not None else None,
            "first_to": first_to,
            "window_start": start if urgent else None,
            "window_end": start + timedelta(hours=12) if urgent else None,
        })

    def phone_for(self, resident: Resident) -> str:
        """Whom the visitor calls: the resident, the household, the emergency
        contact, and failing all of them the community office."""
        for phone in (resident.phone, *(p.phone for p in resident.household.phones), resident.emergency_phone):
            if phone:
                return phone
        return self.cfg["OFFICE_PHONE"]

    # --- the daily check-in ---

    def check_in(self, token: str) -> VisitPlan | None:
        """报平安 on the resident's page (its link's token)."""
        plan = self.session.scalar(select(VisitPlan).where(
            VisitPlan.checkin_token_digest == contract.link_digest(token), VisitPlan.active.is_(True),
            VisitPlan.checkin_daily.is_(True)))
        return self._check_in(plan, self.today)

    def check_in_by_reply(self, plan_id: int, on: date) -> VisitPlan | None:
        """报平安 by answering the morning text (notify read the reply); it
        counts for the day of the text. A reply that comes after a visitor
        was sent for that day still counts: the visit goes ahead."""
        plan = self.session.get(VisitPlan, plan_id)
        if plan is None or not (plan.active and plan.checkin_daily):
            return None
        return self._check_in(plan, on)

    def _check_in(self, plan: VisitPlan | None, on: date) -> VisitPlan | None:
        if plan is None:
            return None
        if self.session.scalar(select(CheckIn.id).where(CheckIn.plan_id == plan.id, CheckIn.on == on)) is None:
            self.session.add(CheckIn(plan_id=plan.id, on=on, at=self.now))
            self.session.flush()
        return plan

    def morning_texts(self) -> int:
        """From the text hour to the deadline: the morning text ("reply 1")
        to each resident who chose the daily check-in, whom the register
        reaches by text and who has a mobile number, once a day. Notify
        sends it by SMS where the office has a gateway and an approved
        template, and reads the reply (its recipient is the plan)."""
        hour = self.now.astimezone(SHANGHAI).hour
        if not self.cfg["CHECKIN_TEXT_HOUR"] <= hour < self.cfg["CHECKIN_DEADLINE_HOUR"]:
            return 0
        checked = exists().where(CheckIn.plan_id == VisitPlan.id, CheckIn.on == self.today)
        plans = self.session.scalars(
            select(VisitPlan).join(Resident).where(
                VisitPlan.active.is_(True), VisitPlan.checkin_daily.is_(True), Resident.reach_by == "text",
                Resident.closed_at.is_(None), ~checked,
                (VisitPlan.checkin_texted_on.is_(None)) | (VisitPlan.checkin_texted_on < self.today))
            .limit(BATCH)).all()
        for plan in plans:
            plan.checkin_texted_on = self.today
            mobile = self.mobile_of(plan.resident)
            if mobile is None:
                continue
            self.outbox.emit(self.session, contract.NOTIFY_SEND, {
                "dedupe_key": f"checkin:{plan.id}:{self.today.isoformat()}", "recipient": f"checkin:{plan.id}",
                "channels": [f"sms://{mobile}"], "language": "zh-CN", "template": "checkin",
                "context": {"office_phone": self.cfg["OFFICE_PHONE"]}})
        return len(plans)

    @staticmethod
    def mobile_of(resident: Resident) -> str | None:
        """The resident's own mobile, else the household's first."""
        for phone in (resident.phone, *(p.phone for p in resident.household.phones)):
            digits = "".join(ch for ch in phone or "" if ch.isdigit())
            if contract.MOBILE.match(digits):
                return digits
        return None

    def checked_in_today(self, plan: VisitPlan) -> bool:
        return self.session.scalar(select(CheckIn.id).where(CheckIn.plan_id == plan.id,
                                                            CheckIn.on == self.today)) is not None

    def missed_checkins(self) -> int:
        """After the deadline hour: a visitor for everyone who chose the
        check-in and has not checked in today (once a day)."""
        if self.now.astimezone(SHANGHAI).hour < self.cfg["CHECKIN_DEADLINE_HOUR"]:
            return 0
        checked = exists().where(CheckIn.plan_id == VisitPlan.id, CheckIn.on == self.today)
        sent = exists().where(Visit.plan_id == VisitPlan.id, Visit.due_on == self.today,
                              Visit.reason == "missed_checkin")
        plans = self.session.scalars(
            select(VisitPlan).where(VisitPlan.active.is_(True), VisitPlan.checkin_daily.is_(True),
                                    VisitPlan.created_at < datetime.combine(self.today, time(0), SHANGHAI),
                                    ~checked, ~sent).limit(BATCH)).all()
        for plan in plans:
            self.open_visit(plan, self.today, "missed_checkin")
        return len(plans)

    # --- outcomes ---

    def record(self, visit_id: int, outcome: str, note: str, actor: str) -> Visit | None:
        """The visitor's outcome. The first one recorded stands (a repeat,
        from the portal and the console both, changes nothing)."""
        visit = self.session.get(Visit, visit_id, with_for_update=True)
        if visit is None or visit.outcome is not None:
            return None
        visit.outcome, visit.note, visit.recorded_by, visit.recorded_at = outcome, note or None, actor, self.now
        resident = visit.plan.resident
        if outcome == "needs_attention":
            self.ask(resident, f"welfare:{visit.id}:needs_attention", "welfare", "needs_attention", False)
        elif outcome == "emergency":
            self.ask(resident, f"welfare:{visit.id}:emergency", "welfare", "emergency", True, first_to="office")
        elif outcome == "nobody_home" and self.previous_outcome(visit) == "nobody_home":
            self.ask(resident, f"welfare:{visit.id}:nobody_home_twice", "welfare", "nobody_home_twice", True)
        self.session.flush()
        log.info("visit recorded", extra={"visit_id": visit.id, "outcome": outcome})
        return visit

    def previous_outcome(self, visit: Visit) -> str | None:
        return self.session.scalar(
            select(Visit.outcome).where(Visit.plan_id == visit.plan_id, Visit.id < visit.id,
                                        Visit.outcome.is_not(None)).order_by(Visit.id.desc()).limit(1))

    # --- overdue visits ---

    def escalate_overdue(self) -> int:
        """A visit not recorded by the end of its due day goes to the grid
        leader (a welfare request, as the grid chain escalates requests)."""
        visits = self.session.scalars(
            select(Visit).where(Visit.outcome.is_(None), Visit.escalated_at.is_(None), Visit.due_on < self.today)
            .order_by(Visit.id).limit(BATCH).with_for_update(skip_locked=True)).all()
        for visit in visits:
            visit.escalated_at = self.now
            self.ask(visit.plan.resident, f"welfare:{visit.id}:overdue", "welfare", "overdue", False)
        return len(visits)


def overdue_filter(today: date):
    """Visits the console lists as overdue: due before today, no outcome."""
    return (Visit.outcome.is_(None)) & (Visit.due_on < today)
