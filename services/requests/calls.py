"""The phone-call log (来电登记): calls the office and hallway leaders
take, who may see them, and the monthly figures the 街道 asks for (every
enquiry counts, also those that never became a request).

Who may see a call follows the queue's scope (staff.Scope) on the caller's
stairwell, and everyone sees the calls they took themselves. Looking the
caller up in the register by number is the community service's (its
residents lookup API); this log does not do it yet."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, true

from services.common import contract
from services.common.clock import SHANGHAI

from .models import Building, PhoneCall
from .staff import Scope

OUTCOMES = ("request", "answered", "referred")  # became a request; answered on the spot; referred elsewhere
REFERRALS = ("12345", "property", "police", "other")  # the 12345 hotline, the property company (物业), police
OTHER_TOPIC = "other"
# What a call may be about: any service a resident asks for or the office handles, or something else.
TOPICS = tuple(c.code for c in contract.RESIDENT_CATEGORIES) + (OTHER_TOPIC,)


def visible(scope: Scope, actor: str):
    """A filter on PhoneCall: the calls `actor` may see in `scope`."""
    if scope.admin:
        return true()
    if scope.role == "grid_leader" and scope.grid:
        place = PhoneCall.building_code.in_(select(Building.code).where(Building.grid == scope.grid))
    else:
        pairs = [s.split(":", 1) for s in scope.stairwells]
        place = or_(*(and_(PhoneCall.building_code == b, PhoneCall.unit == u) for b, u in pairs)) if pairs else None
    return or_(PhoneCall.taken_by == actor, place) if place is not None else PhoneCall.taken_by == actor


def allows(scope: Scope, actor: str, call: PhoneCall) -> bool:
    return call.taken_by == actor or scope.allows_place(call.building, call.unit)


def month_of(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m")


STATS_HEADER = ["month", "calls", "became_request", "answered", "referred", "no_request"]


def monthly(calls) -> list[list]:
    """Per month (Hangzhou time): all calls, those that became a request
    (linked to one), answered on the spot, referred elsewhere, and every
    enquiry that did not become a request (a call marked "request" whose
    request was never entered counts there too)."""
    counts: dict[str, Counter] = {}
    for call in calls:
        c = counts.setdefault(month_of(call.called_at), Counter())
        c["calls"] += 1
        if call.service_request_id:
            c["became_request"] += 1
        else:
            c["no_request"] += 1
        if call.outcome in ("answered", "referred"):
            c[call.outcome] += 1
    return [[m, *(counts[m][k] for k in STATS_HEADER[1:])] for m in sorted(counts)]


def anonymise_expired(session, days: int, now: datetime, batch: int = 500) -> int:
    """Retention: the caller's number and name of calls older than `days`
    are removed; the rest stays for the monthly figures."""
    rows = session.scalars(select(PhoneCall).where(
        PhoneCall.called_at <= now - timedelta(days=days), PhoneCall.anonymised_at.is_(None)).limit(batch)).all()
    for call in rows:
        call.caller_phone, call.caller_name, call.anonymised_at = "", "", now
    return len(rows)
