"""The time bank (时间银行): service hours, counted at a task's completion
and confirmed by whoever organised the service, and the time coins that
follow confirmed hours (1 hour = 1 coin), spent on services or donated to
another volunteer, never paid out as cash.

Transactions: like every matching operation, these stage their changes in
the caller's session and never commit or roll back; the view or task that
calls them commits once."""
from __future__ import annotations

import logging
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select

from services.common.clock import utcnow
from services.common.inbox import Permanent

from .models import CoinEntry, HoursEntry, StaffChange, Volunteer
from .registry import carried_out, record_change

log = logging.getLogger(__name__)


def hours_between(start: datetime, end: datetime) -> Decimal:
    """Start to completion in 0.5 h steps (nearest), at least half an hour."""
    halves = (Decimal((end - start).total_seconds()) / Decimal(1800)).quantize(Decimal(1), ROUND_HALF_UP)
    return max(Decimal("0.5"), halves / 2)


class TimeBank:
    def __init__(self, session, now: datetime | None = None):
        self.session = session
        self.now = now or utcnow()

    def confirm_hours(self, entry: HoursEntry, by: str, hours: Decimal | None = None,
                      by_volunteer: int | None = None) -> bool:
        """Confirmed by whoever organised the service; a correction sets the
        hours. Coins follow the confirmed hours (1 hour = 1 coin).
        `by_volunteer`: the volunteer confirming (a station lead), who may
        never confirm their own entry: coins would be self-issued."""
        if by_volunteer is not None and by_volunteer == entry.volunteer_id:
            log.info("own hours not confirmed", extra={"hours_entry_id": entry.id, "volunteer_id": by_volunteer})
            return False
        if hours is not None:
            entry.hours = hours
        entry.status, entry.confirmed_by, entry.confirmed_at = "confirmed", by, self.now
        coin = self.session.scalar(select(CoinEntry).where(CoinEntry.hours_entry_id == entry.id))
        if coin is None:
            self.session.add(CoinEntry(volunteer_id=entry.volunteer_id, amount=entry.hours, kind="earned",
                                       ref=f"hours:{entry.id}", hours_entry_id=entry.id, created_at=self.now))
        else:
            coin.amount = entry.hours
        return True

    def review(self, data: dict) -> HoursEntry:
        """The office's confirmation or correction from the console
        (contract.HOURS_REVIEW). A correction keeps the hours before it and
        the reason; coins follow the confirmed hours, once per entry."""
        entry = self.session.get(HoursEntry, data["entry_id"])
        if entry is None:
            raise Permanent("no such hours entry")
        hours = None
        if data["action"] == "correct":
            hours = data["hours"]
            if entry.hours != hours:
                entry.corrected_from = entry.hours
            entry.corrected_reason = data["reason"]
        self.confirm_hours(entry, by=data["actor"], hours=hours)
        log.info("hours reviewed", extra={"hours_entry_id": entry.id, "action": data["action"],
                                          "actor": data["actor"]})
        return entry

    def spend(self, data: dict) -> StaffChange:
        """Coins a volunteer spent, as the office records it in the console
        (contract.COINS_SPEND): once per change id; refused, and kept so
        for the console to say, when the balance does not cover it."""
        if (done := carried_out(self.session, data)) is not None:
            return done
        vid = data["volunteer_id"]
        if self.session.get(Volunteer, vid) is None:
            return record_change(self.session, data, "spend", self.now, volunteer_id=vid, reason="no_such_volunteer")
        spent = self.move_coins(vid, data["amount"], "spent", data["ref"])
        report = {"amount": str(data["amount"]), "ref": data["ref"], "balance": str(self.coin_balance(vid))}
        return record_change(self.session, data, "spend", self.now, volunteer_id=vid,
                             reason=None if spent else "not_enough_coins", report=report)

    def coin_balance(self, volunteer_id: int) -> Decimal:
        total = self.session.scalar(select(func.coalesce(func.sum(CoinEntry.amount), 0))
                                    .where(CoinEntry.volunteer_id == volunteer_id))
        return Decimal(total or 0).quantize(Decimal("0.1"))

    def move_coins(self, volunteer_id: int, amount: Decimal, kind: str, ref: str,
                   to_volunteer: int | None = None) -> bool:
        """Spend on a service, or donate to another volunteer; never below zero."""
        if amount <= 0 or self.coin_balance(volunteer_id) < amount:
            return False
        self.session.add(CoinEntry(volunteer_id=volunteer_id, amount=-amount, kind=kind, ref=ref,
                                   created_at=self.now))
        if to_volunteer is not None:
            self.session.add(CoinEntry(volunteer_id=to_volunteer, amount=amount, kind="received",
                                       ref=f"from:{volunteer_id}", created_at=self.now))
        return True
