"""The wire contract between Linli's services.

Everything one service says to another travels as a Celery task, sent by
name onto the receiver's queue, carrying one argument: an envelope
(id, type, version, occurred_at, source, data). This module is the only
place that names those tasks and states the schema of every payload; each
consumer validates what it receives against it, each producer validates
what it sends.

It also holds the shared vocabulary that travels in payloads: the service
categories and the request statuses.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from . import community
from .i18n import N_, translate

# --- Queues: one per service; a worker consumes only its own (-Q <name>). ---
QUEUES = ("requests", "volunteers", "notify", "community")
# Who may sign an envelope: a service, or the beat process that sends timers.
SOURCES = QUEUES + ("beat",)

# --- Task names (the receiving service is the prefix, and its queue). ---
REQUEST_SUBMITTED = "volunteers.request_submitted"
REQUEST_CANCELLED = "volunteers.request_cancelled"
FEEDBACK_RECEIVED = "volunteers.feedback_received"
STATUS_CHANGED = "requests.status_changed"
NOTIFY_SEND = "notify.send"
INBOX_READ = "notify.inbox_read"
# Periodic housekeeping, sent by the one beat process to each service. They
# carry no envelope: running one twice is harmless by construction.
RELAY_REQUESTS_OUTBOX = "requests.relay_outbox"
RELAY_VOLUNTEERS_OUTBOX = "volunteers.relay_outbox"
RETRY_DELIVERIES = "notify.retry_deliveries"
SWEEP_DISPATCH = "volunteers.sweep"  # offer expiry, waiting requests, deadlines, escalation steps
DAILY_DIGEST = "volunteers.daily_digest"  # grid leaders' morning summary
RELAY_NOTIFY_OUTBOX = "notify.relay_outbox"
RELAY_COMMUNITY_OUTBOX = "community.relay_outbox"
# Notify tells the service that asked when a notification could not be delivered.
DELIVERY_FAILED = "volunteers.delivery_failed"
# The staff console (served by intake) acts on matching's state: reassign,
# escalate, close a request; activate or deactivate a volunteer. Matching
# answers a request action with a status change, or says why it refused.
STAFF_ACTION = "volunteers.staff_action"
STAFF_ACTION_REFUSED = "requests.staff_action_refused"
# A roster the console read and checked, its good rows handed to matching at once.
ROSTER_IMPORT = "volunteers.roster_import"
# Intake's own timers: the follow-up (回访) the day after completion, and the
# retention job that anonymises residents' data of long-closed requests.
FOLLOW_UP = "requests.follow_up"
RETENTION = "requests.retention"


def queue_for(task_name: str) -> str:
    """The queue a task goes to is the service that owns it."""
    queue = task_name.split(".", 1)[0]
    if queue not in QUEUES:
        raise ValueError(f"task {task_name!r} names no known service queue")
    return queue


# --- Shared vocabulary ---


@dataclass(frozen=True)
class Category:
    code: str
    label: str  # English, marked for the catalogue: name() gives it in a language
    staff_only: bool = False  # handled by the community office, never by volunteers
    credential: bool = False  # only volunteers with a verified credential (the retired doctors)
    # A community programme's own work (visits): never asked for by a resident,
    # never on a public form or feed.
    programme: bool = False

    def name(self, lang: str) -> str:
        return translate(self.label, lang)


# The services 翠苑一区's volunteers offer, then the staff-only matters.
CATEGORIES = (
    Category("haircut", N_("Haircut")),
    Category("alterations", N_("Clothes alterations")),
    Category("appliance_repair", N_("Appliance repair")),
    Category("sharpening", N_("Knife and scissor sharpening")),
    Category("umbrella_repair", N_("Umbrella repair")),
    Category("bicycle_repair", N_("Bicycle repair")),
    Category("health_check", N_("Basic health check"), credential=True),
    Category("prenatal_guidance", N_("Prenatal guidance"), credential=True),
    Category("lift_retrofit", N_("Lift retrofit"), staff_only=True),
    Category("parking", N_("Parking"), staff_only=True),
    Category("environment", N_("Environment"), staff_only=True),
    Category("complaint", N_("Complaint"), staff_only=True),
    # The community service's visits (探访) to residents living alone or
    # needing care, and what a visitor found that the grid leader must see to.
    Category("visit", N_("Home visit"), programme=True),
    Category("welfare", N_("Welfare concern"), staff_only=True, programme=True),
)
CATEGORY_BY_CODE = {c.code: c for c in CATEGORIES}
# What residents (or staff for them) may ask for.
RESIDENT_CATEGORIES = tuple(c for c in CATEGORIES if not c.programme)
VOLUNTEER_SKILLS = tuple(c.code for c in CATEGORIES if not c.staff_only)

STATUSES = (
    "submitted",
    "matching",
    "offered",
    "assigned",
    "in_progress",
    "completed",
    "closed",
    "cancelled",
    "escalated",
)
URGENCIES = ("normal", "urgent")
LEADER_LEVELS = ("hallway", "grid", "office")
# How a resident chose to hear back about their request (intake's opt-in).
RESIDENT_MESSAGES = ("none", "text", "call")
MODES = ("home", "station")
LANGUAGES = ("zh-CN", "en")
TEMPLATES = ("offer", "offer_withdrawn", "assigned", "reminder", "completed", "escalation", "magic_link", "thanks",
             "digest", "follow_up",
             # To residents when staff extend a deadline or close a request.
             "extended", "closed",
             # The morning text to a resident who checks in daily (报平安 by reply).
             "checkin")


# --- Envelope and payloads ---

# Row ids fit a signed 32-bit integer (PostgreSQL's INTEGER); a larger one
# names nothing and must not reach the database.
MAX_ID = 2**31 - 1


def Id(strict: bool = True, **kwargs) -> fields.Integer:  # noqa: N802 - reads as a field type
    """A row id in a payload or request: a positive 32-bit integer. A query
    string carries only text: there, strict=False reads "12" as 12."""
    return fields.Integer(strict=strict, validate=validate.Range(1, MAX_ID), **kwargs)



# What fields.Time(format="%H:%M") reads (strptime: hour 0-23, minute 0-59,
# one or two digits each), stated for the OpenAPI document.
CLOCK = r"^([01]?[0-9]|2[0-3]):[0-5]?[0-9]$"


def ClockTime(**kwargs) -> fields.Time:  # noqa: N802 - reads as a field type
    """A time of day in a request, HH:MM."""
    return fields.Time(format="%H:%M", metadata={"pattern": CLOCK, **kwargs.pop("metadata", {})}, **kwargs)


class Envelope(Schema):
    id = fields.UUID(required=True)
    type = fields.String(required=True, validate=validate.Length(1, 100))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(1))
    occurred_at = fields.AwareDateTime(required=True)
    source = fields.String(required=True, validate=validate.OneOf(SOURCES))
    data = fields.Dict(required=True)


class RequestSubmitted(Schema):
    """A resident's request, as the matching service needs it: no name,
    no full phone, no room (those are fetched after acceptance)."""

    request_id = fields.UUID(required=True)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORY_BY_CODE))
    summary = fields.String(required=True, validate=validate.Length(1, 1000))
    building = fields.String(required=True, validate=validate.Length(1, 16))
    unit = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 8))
    masked_phone = fields.String(required=True, validate=validate.Length(1, 20))
    mode = fields.String(required=True, validate=validate.OneOf(MODES))
    window_start = fields.AwareDateTime(load_default=None, allow_none=True)
    window_end = fields.AwareDateTime(load_default=None, allow_none=True)
    urgency = fields.String(required=True, validate=validate.OneOf(URGENCIES))
    # Dispatched first when volunteers are scarce.
    elderly = fields.Boolean(load_default=False)  # over 80
    disability = fields.Boolean(load_default=False)
    # Keyed hash of the requester's phone: a volunteer is never offered their own request.
    requester_digest = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 64))
    # A programme's request (channel "programme"): its visit, for the outcome
    # the visitor records; who should go first (the paired volunteer, 结对),
    # or a leader instead of volunteers.
    programme_ref = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(r"^visit:[0-9]{1,10}$"))
    preferred_volunteer_id = Id(load_default=None, allow_none=True)
    # Straight to a leader on the grid chain instead of volunteers: the
    # hallway leader who visits, the office for an emergency.
    first_to = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(LEADER_LEVELS))


class RequestCancelled(Schema):
    request_id = fields.UUID(required=True)
    actor = fields.String(required=True, validate=validate.Length(1, 64))
    reason = fields.String(load_default="", validate=validate.Length(0, 500))


class FeedbackReceived(Schema):
    """The resident's thanks and rating after completion (回访)."""

    request_id = fields.UUID(required=True)
    rating = fields.Integer(required=True, strict=True, validate=validate.Range(1, 5))
    thanks = fields.Boolean(load_default=False)
    comment = fields.String(load_default="", validate=validate.Length(0, 500))


class StatusChanged(Schema):
    request_id = fields.UUID(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    actor = fields.String(required=True, validate=validate.Length(1, 64))
    note = fields.String(load_default="", validate=validate.Length(0, 500))
    volunteer_name = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 64))
    # A station booking: when and where the resident should come.
    appointment_at = fields.AwareDateTime(load_default=None, allow_none=True)
    place = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 100))


# The channels Linli sends through: the Chinese office bots, email, and
# webhooks (JSON or form: SMS gateways and the office's own systems). Any
# other Apprise scheme is refused where a channel URL is accepted, so that a
# stolen token cannot point a recipient's messages at an arbitrary service.
CHANNEL_SCHEMES = ("wecombot", "dingtalk", "feishu", "lark", "mailto", "mailtos", "json", "jsons", "form", "forms",
                   # A resident's phone, through the office's SMS or voice gateway (notify.gateways).
                   "sms", "voice")


# Validator of a channel URL's scheme (any case), with something after it.
CHANNEL_URL = re.compile(r"^(" + "|".join(CHANNEL_SCHEMES) + r")://[\s\S]*[^/]", re.IGNORECASE)
channel_url = validate.Regexp(
    CHANNEL_URL, error=f"A channel URL starts with one of {', '.join(s + '://' for s in CHANNEL_SCHEMES)}.")


RECIPIENT_KEY = re.compile(r"^[a-z]+:[A-Za-z0-9_-]{1,64}$")  # volunteer:12, leader:3, resident:<request id>


class NotificationRequested(Schema):
    """Ask the notify service to tell one recipient something, once.

    `channels` are Apprise URLs in order of preference; when present they
    replace what notify holds for the recipient. Every message also lands in
    the recipient's in-app inbox.
    """

    dedupe_key = fields.String(required=True, validate=validate.Length(1, 200))
    recipient = fields.String(required=True, validate=validate.Regexp(RECIPIENT_KEY))
    channels = fields.List(fields.String(validate=[validate.Length(1, 2000), channel_url]), load_default=None,
                           allow_none=True, validate=validate.Length(0, 5))
    language = fields.String(load_default="zh-CN", validate=validate.OneOf(LANGUAGES))
    template = fields.String(required=True, validate=validate.OneOf(TEMPLATES))
    context = fields.Dict(keys=fields.String(), load_default=dict)
    urgent = fields.Boolean(load_default=False)  # urgent messages ignore quiet hours
    # Who hears of a delivery that failed for good (its `<reply_to>.delivery_failed` task).
    reply_to = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(("volunteers",)))


# Why matching escalated, withdrew an offer or passed a request on: the
# words leaders read in their messages and staff in the console's timeline.
REASONS = {
    "staff_only": N_("a matter for community staff"),
    "no_candidate": N_("no volunteer is available"),
    "all_declined": N_("every volunteer asked declined"),
    "not_taken": N_("nobody took it in time"),
    "overdue": N_("it is past its completion deadline"),
    "taken": N_("another volunteer took it"),
    "escalated": N_("passed to community staff"),
    "cancelled": N_("the request was cancelled"),
    "reassigned": N_("staff assigned it to someone else"),
    "staff": N_("passed on by community staff"),
    "handed_back": N_("handed back, to be routed again"),
    "reopened": N_("the resident is not satisfied"),
    "visit": N_("a visit to a resident of your stairwell is due"),
    "welfare": N_("a visit found a resident who needs help"),
}

# --- The volunteer registry's input: matching owns the registry; the console
# checks a form or a roster with the same schemas before it asks. ---

MOBILE = re.compile(r"^1[3-9]\d{9}$")
ORDERED = N_("The end must be after the start.")
VERIFIED = N_("Only skills the volunteer has can be verified.")
APPRISE = N_("Not a channel URL Apprise understands (e.g. wecombot://KEY, mailto://…, json://…).")
UNKNOWN_BUILDING = N_("Choose a building of the community.")
NO_SUCH_UNIT = N_("That building has no such unit.")
PHONE_TAKEN = N_("A volunteer with this phone number is registered already.")


def channel_ok(url: str) -> None:
    """What Apprise understands, beyond the scheme (channel_url)."""
    import apprise  # only where a channel URL is checked: the import is slow

    if CHANNEL_URL.match(url) and apprise.Apprise.instantiate(url) is None:
        raise ValidationError(APPRISE)


def place_errors(building: str | None, unit: str | None) -> dict:
    """A building and unit checked against the community layout (the file
    every service seeds from): {field: [message]}, empty when they exist."""
    if building is None:
        return {}
    found = next((b for b in community.buildings() if b["code"] == building), None)
    if found is None:
        return {"building": [UNKNOWN_BUILDING]}
    if unit and unit not in found["units"]:
        return {"unit": [NO_SUCH_UNIT]}
    return {}


def grid_of(building: str) -> str | None:
    return next((b["grid"] for b in community.buildings() if b["code"] == building), None)


class WindowSchema(Schema):
    """A weekly window in Hangzhou time, e.g. Saturday 09:00-11:00."""

    weekday = fields.Integer(required=True, strict=True, validate=validate.Range(0, 6, error=N_("Choose a weekday.")),
                             error_messages={"required": N_("Choose a weekday."), "invalid": N_("Choose a weekday.")})
    start = ClockTime(required=True, error_messages={"required": N_("A time of day, e.g. 09:00."),
                                                     "invalid": N_("A time of day, e.g. 09:00.")})
    end = ClockTime(required=True, metadata={"description": ORDERED},
                    error_messages={"required": N_("A time of day, e.g. 09:00."),
                                    "invalid": N_("A time of day, e.g. 09:00.")})

    @validates_schema
    def _order(self, data, **kwargs):
        if data["end"] <= data["start"]:
            raise ValidationError({"end": [ORDERED]})


def _skills(**kwargs) -> fields.List:
    return fields.List(fields.String(validate=validate.OneOf(VOLUNTEER_SKILLS, error=N_("Not a service volunteers "
                                                                                        "offer."))), **kwargs)


class VolunteerIn(Schema):
    """A volunteer as the office registers them (志愿者登记): the registry API's
    body, a roster row, the console's form, and the register task's payload."""

    name = fields.String(required=True, validate=validate.Length(1, 64, error=N_("A name of 1 to 64 characters.")),
                         error_messages={"required": N_("A name of 1 to 64 characters.")})
    display_name = fields.String(load_default=None, allow_none=True,
                                 validate=validate.Length(1, 64, error=N_("A name of 1 to 64 characters.")))
    phone = fields.String(required=True, validate=validate.Regexp(MOBILE, error=N_("Enter an 11-digit mobile number.")),
                          error_messages={"required": N_("Enter an 11-digit mobile number.")})
    building = fields.String(required=True, validate=validate.Length(1, 16, error=UNKNOWN_BUILDING),
                             error_messages={"required": UNKNOWN_BUILDING},
                             metadata=community.documented_building())
    unit = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 8, error=NO_SUCH_UNIT),
                         metadata=community.documented_unit())
    skills = _skills(required=True, validate=validate.Length(1, len(VOLUNTEER_SKILLS),
                                                             error=N_("Choose at least one service.")),
                     error_messages={"required": N_("Choose at least one service.")},
                     metadata={"uniqueItems": True})  # checked by _unique
    # Skills whose credential staff have checked (required for health checks, prenatal guidance).
    verified = _skills(load_default=list, metadata={"description": VERIFIED})
    teams = fields.List(fields.String(validate=validate.Length(1, 32, error=N_("A team name of 1 to 32 characters."))),
                        load_default=list, validate=validate.Length(0, 10, error=N_("At most 10 teams.")))
    capacity = fields.Integer(load_default=1, strict=True,
                              validate=validate.Range(1, 10, error=N_("Between 1 and 10 tasks.")),
                              error_messages={"invalid": N_("Between 1 and 10 tasks.")})
    channels = fields.List(fields.String(validate=[validate.Length(1, 2000), channel_url, channel_ok],
                                         metadata={"description": "A channel URL Apprise understands "
                                                                  "(the scheme is not enough)."}),
                           load_default=list, validate=validate.Length(0, 5, error=N_("At most 5 channels.")))
    language = fields.String(load_default="zh-CN", validate=validate.OneOf(LANGUAGES))
    windows = fields.List(fields.Nested(WindowSchema), load_default=list,
                          validate=validate.Length(0, 21, error=N_("At most 21 weekly windows.")))
    days_off = fields.List(fields.Date(error_messages={"invalid": N_("A date, e.g. 2026-12-24.")}),
                           load_default=list, validate=validate.Length(0, 366))
    active = fields.Boolean(load_default=True)

    @validates("skills")
    def _unique(self, value, **kwargs):
        if len(set(value)) != len(value):
            raise ValidationError(N_("Each skill once."))

    @validates_schema(skip_on_field_errors=False)
    def _cross(self, data, partial=False, **kwargs):
        errors = place_errors(data.get("building"), data.get("unit"))
        if "verified" in data and "skills" in data and set(data["verified"]) - set(data["skills"]):
            errors["verified"] = [VERIFIED]
        if errors:
            raise ValidationError(errors)


class VolunteerPatch(VolunteerIn):
    """The same fields, any subset (use with partial=VolunteerPatch.ANY): a
    window given is whole (partial=True would let one lack its end)."""

    ANY = tuple(VolunteerIn._declared_fields)


STAFF_REQUEST_ACTIONS = ("assign", "escalate", "close")
# Why staff escalate: the words leaders read in their message (notify's
# REASONS). A free-text note goes with it into the timeline, not the reason.
STAFF_ESCALATION_REASONS = ("staff", "handed_back", "reopened")
STAFF_VOLUNTEER_ACTIONS = ("activate", "deactivate", "update", "register")
# Why matching did not carry out a registry change (the console shows it).
REGISTRY_REFUSALS = ("phone_taken", "out_of_scope", "no_such_volunteer", "busy", "channels_changed")


class ChannelRemoval(Schema):
    """One of the volunteer's channels the office removes, as the console
    showed it: its place in the list and its masked form (mask_url), so that
    matching removes nothing if the list changed meanwhile."""

    index = fields.Integer(required=True, strict=True, validate=validate.Range(0, 4))
    masked = fields.String(required=True, validate=validate.Length(1, 200))


class StaffAction(Schema):
    """A staff member's decision, taken in the console, for matching to carry out."""

    action = fields.String(required=True, validate=validate.OneOf(STAFF_REQUEST_ACTIONS + STAFF_VOLUNTEER_ACTIONS))
    request_id = fields.UUID(load_default=None, allow_none=True)
    volunteer_id = Id(load_default=None, allow_none=True)
    level = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(1, 3))
    actor = fields.String(required=True, validate=validate.Length(1, 64))  # staff:<id>
    note = fields.String(load_default="", validate=validate.Length(0, 500))
    # escalate: why, in fixed words (the note is free text).
    reason = fields.String(load_default="staff", validate=validate.OneOf(STAFF_ESCALATION_REASONS))
    # update (as sent before registering came to the console): capacity and skills only.
    capacity = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(1, 10))
    skills = fields.List(fields.String(validate=validate.OneOf(VOLUNTEER_SKILLS)), load_default=None,
                         allow_none=True, validate=validate.Length(1, len(VOLUNTEER_SKILLS)))
    # register: the new volunteer; update: the fields the office changed.
    volunteer = fields.Nested(VolunteerIn, load_default=None, allow_none=True)
    changes = fields.Nested(VolunteerPatch(partial=VolunteerPatch.ANY), load_default=None, allow_none=True)
    # update: some of the registered channels removed (channel URLs are
    # secrets the console never holds; `changes.channels` replaces them all).
    remove_channels = fields.List(fields.Nested(ChannelRemoval), load_default=list, validate=validate.Length(0, 5))
    # The console's handle on a registry change: matching records the outcome
    # under it (GET /api/v1/staff-changes/<id>), once however often it is sent.
    change_id = fields.UUID(load_default=None, allow_none=True)
    # A grid leader's grid: matching changes only volunteers living in it.
    grid = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 16))

    @validates_schema
    def _targets(self, data, **kwargs):
        if data["action"] in STAFF_REQUEST_ACTIONS and not data.get("request_id"):
            raise ValidationError("A request action names its request.", "request_id")
        if data["action"] in ("assign",) + STAFF_VOLUNTEER_ACTIONS and data["action"] != "register" \
                and not data.get("volunteer_id"):
            raise ValidationError("This action names a volunteer.", "volunteer_id")
        if data["action"] == "update" and data.get("capacity") is None and not data.get("skills") \
                and not data.get("changes"):
            raise ValidationError("An update changes the capacity or the skills.", "capacity")
        if data["action"] == "register" and not (data.get("volunteer") and data.get("change_id")):
            raise ValidationError("A registration carries the volunteer and a change id.", "volunteer")


# One import task carries at most this many rows (matching's roster bound).
ROSTER_TASK_ROWS = 5000


class RosterImport(Schema):
    """A roster's good rows, checked in the console, for matching to register
    or update (by phone) in one transaction."""

    change_id = fields.UUID(required=True)
    actor = fields.String(required=True, validate=validate.Length(1, 64))
    grid = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 16))
    # Spreadsheet row numbers (2 = the first after the header), for the report.
    row_numbers = fields.List(fields.Integer(strict=True, validate=validate.Range(2, 10**6)), required=True)
    rows = fields.List(fields.Nested(VolunteerIn), required=True, validate=validate.Length(1, ROSTER_TASK_ROWS))

    @validates_schema
    def _aligned(self, data, **kwargs):
        if len(data["row_numbers"]) != len(data["rows"]):
            raise ValidationError("One row number per row.", "row_numbers")


class StaffActionRefused(Schema):
    request_id = fields.UUID(required=True)
    action = fields.String(required=True, validate=validate.OneOf(STAFF_REQUEST_ACTIONS))
    actor = fields.String(required=True, validate=validate.Length(1, 64))
    reason = fields.String(required=True, validate=validate.Length(1, 100))  # full, inactive, closed


class InboxRead(Schema):
    """The recipient has seen their in-app messages up to this one."""

    recipient = fields.String(required=True, validate=validate.Regexp(RECIPIENT_KEY))
    up_to_id = Id(required=True)


class DeliveryFailed(Schema):
    dedupe_key = fields.String(required=True, validate=validate.Length(1, 200))
    recipient = fields.String(required=True, validate=validate.Length(1, 100))
    template = fields.String(required=True, validate=validate.OneOf(TEMPLATES))
    error = fields.String(load_default="", validate=validate.Length(0, 300))


# (task name, version) → payload schema. An unknown version is rejected.
PAYLOADS: dict[tuple[str, int], type[Schema]] = {
    (REQUEST_SUBMITTED, 1): RequestSubmitted,
    (REQUEST_CANCELLED, 1): RequestCancelled,
    (FEEDBACK_RECEIVED, 1): FeedbackReceived,
    (STATUS_CHANGED, 1): StatusChanged,
    (NOTIFY_SEND, 1): NotificationRequested,
    (DELIVERY_FAILED, 1): DeliveryFailed,
    (INBOX_READ, 1): InboxRead,
    (STAFF_ACTION, 1): StaffAction,
    (STAFF_ACTION_REFUSED, 1): StaffActionRefused,
    (ROSTER_IMPORT, 1): RosterImport,
}



# --- The office's changes to matching: stations, weekly sessions, service hours ---
#
# The console validates a station or a session with the very schemas
# matching's API takes (StationIn, StationSessionIn, here so that no service
# imports another), then asks matching to make the change by task.

STATION_CHANGE = "volunteers.station_change"
HOURS_REVIEW = "volunteers.hours_review"
COINS_SPEND = "volunteers.coins_spend"

END_AFTER_START = N_("The end must be after the start.")
CLOCK_ERROR = N_("A time of day as HH:MM, e.g. 09:00.")


class StationIn(Schema):
    code = fields.String(required=True, validate=validate.Regexp(
        r"^[a-z0-9-]{1,32}$", error=N_("1 to 32 lower-case letters, digits or dashes, e.g. hall-1.")))
    name = fields.String(required=True, validate=validate.Length(1, 64, error=N_("Up to 64 characters.")))
    place = fields.String(required=True, validate=validate.Length(1, 100, error=N_("Up to 100 characters.")))
    lead_volunteer_id = Id(load_default=None, allow_none=True)


class StationSessionIn(Schema):
    category = fields.String(required=True, validate=validate.OneOf(VOLUNTEER_SKILLS, error=N_("Choose a service.")),
                             error_messages={"required": N_("Choose a service.")})
    weekday = fields.Integer(required=True, strict=True, validate=validate.Range(0, 6, error=N_("Choose a day.")),
                             error_messages={"required": N_("Choose a day."), "invalid": N_("Choose a day.")})
    start = ClockTime(required=True, error_messages={"required": CLOCK_ERROR, "invalid": CLOCK_ERROR})
    end = ClockTime(required=True, metadata={"description": END_AFTER_START},
                    error_messages={"required": CLOCK_ERROR, "invalid": CLOCK_ERROR})
    volunteer_id = Id(required=True, metadata={"description": "A volunteer who offers this category."},
                      error_messages={"required": N_("Choose a volunteer."), "invalid": N_("Choose a volunteer.")})
    slots = fields.Integer(required=True, strict=True, validate=validate.Range(
        1, 100, error=N_("1 to 100 places.")), error_messages={"required": N_("1 to 100 places."),
                                                              "invalid": N_("1 to 100 places.")})

    @validates_schema
    def _order(self, data, **kwargs):
        if data["end"] <= data["start"]:
            raise ValidationError({"end": [END_AFTER_START]})


STATION_ACTIONS = ("add_station", "add_session", "edit_session", "remove_session")


class StationChange(Schema):
    """A station or weekly session the office added, changed or removed in the console."""

    action = fields.String(required=True, validate=validate.OneOf(STATION_ACTIONS))
    actor = fields.String(required=True, validate=validate.Length(1, 64))  # staff:<id>
    station = fields.Nested(StationIn, load_default=None, allow_none=True)  # add_station
    station_id = Id(load_default=None, allow_none=True)  # add_session
    session_id = Id(load_default=None, allow_none=True)  # edit_session, remove_session
    session = fields.Nested(StationSessionIn, load_default=None, allow_none=True)  # add_session, edit_session

    @validates_schema
    def _parts(self, data, **kwargs):
        needs = {"add_station": ("station",), "add_session": ("station_id", "session"),
                 "edit_session": ("session_id", "session"), "remove_session": ("session_id",)}
        for name in needs[data["action"]]:
            if data.get(name) is None:
                raise ValidationError(f"{data['action']} needs {name}.", name)


def half_hour_steps(value) -> None:
    """Service hours are counted in 0.5 h steps."""
    if value is not None and (value * 2) % 1:
        raise ValidationError(N_("Hours are counted in 0.5 h steps."))


HOURS_ACTIONS = ("confirm", "correct")


class HoursReview(Schema):
    """The office confirms a volunteer's hours, or corrects them (with a reason) and confirms."""

    action = fields.String(required=True, validate=validate.OneOf(HOURS_ACTIONS))
    entry_id = Id(required=True)
    actor = fields.String(required=True, validate=validate.Length(1, 64))
    hours = fields.Decimal(load_default=None, allow_none=True, places=1, as_string=True,
                           validate=[validate.Range(0.5, 24), half_hour_steps])
    reason = fields.String(load_default="", validate=validate.Length(0, 300))

    @validates_schema
    def _correction(self, data, **kwargs):
        if data["action"] == "correct" and (data.get("hours") is None or not data.get("reason", "").strip()):
            raise ValidationError("A correction gives the hours and a reason.", "reason")


# Why matching did not record a spending (the console shows it).
SPEND_REFUSALS = ("not_enough_coins", "no_such_volunteer")


class CoinsSpend(Schema):
    """Time coins a volunteer spent on a service (时间银行), as the office
    records it in the console; matching records the outcome under the
    change id (done, or refused: not enough coins), once however often it
    is sent."""

    change_id = fields.UUID(required=True)
    actor = fields.String(required=True, validate=validate.Length(1, 64))
    volunteer_id = Id(required=True)
    amount = fields.Decimal(required=True, places=1, as_string=True,
                            validate=[validate.Range(0.5, 1000), half_hour_steps])
    ref = fields.String(required=True, validate=validate.Length(1, 100))  # what the coins bought


PAYLOADS[(STATION_CHANGE, 1)] = StationChange
PAYLOADS[(HOURS_REVIEW, 1)] = HoursReview
PAYLOADS[(COINS_SPEND, 1)] = CoinsSpend


# --- The community register (住户台账): the office keeps it in the console,
# the community service owns it. The console checks a form or a register file
# with these same schemas, then hands the change over as a task with a change
# id; the community service records the outcome under that id. ---

REGISTER_CHANGE = "community.register_change"
REGISTER_IMPORT = "community.register_import"

TENURES = ("owner", "tenant")
SEXES = ("female", "male")
RELATIONS = ("head", "spouse", "child", "parent", "grandchild", "other")
CARE_NEEDS = ("none", "partial", "full")  # 半失能 partial, 失能 full
REACH_BY = ("text", "call", "hallway_leader")  # how a resident prefers to be reached
CONSENT_HOW = ("paper", "in_person", "phone", "online")
CLOSE_REASONS = ("moved_out", "deceased")  # a household only moves out
REGISTER_ACTIONS = ("add_household", "edit_household", "close_household", "add_resident", "edit_resident",
                    "close_resident")
# A household's or a resident's phone: a mobile, or a landline (0571-88886666).
PHONE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")
A_PHONE = N_("Enter a mobile number (11 digits) or a landline like 0571-88886666.")
CONSENT_GIVEN = N_("Say when and how the resident agreed to be contacted.")
ROOM = N_("A room number like 302 or 1201A.")
FLOOR = N_("A floor from -2 to 40.")
# One import task carries at most this many residents (a register file's bound).
REGISTER_TASK_ROWS = 20000


def _choice(options, message, **kwargs):
    return fields.String(validate=validate.OneOf(options, error=message),
                         error_messages={"required": message}, **kwargs)


def _phone(**kwargs) -> fields.String:
    return fields.String(validate=validate.Regexp(PHONE, error=A_PHONE), error_messages={"required": A_PHONE},
                         **kwargs)


class HouseholdIn(Schema):
    """A household (户) as the office registers it: the console's form, a
    register file's household columns, and the register tasks' payload."""

    building = fields.String(required=True, validate=validate.Length(1, 16, error=UNKNOWN_BUILDING),
                             error_messages={"required": UNKNOWN_BUILDING},
                             metadata=community.documented_building())
    unit = fields.String(required=True, validate=validate.Length(1, 8, error=NO_SUCH_UNIT),
                         error_messages={"required": NO_SUCH_UNIT}, metadata=community.documented_unit())
    floor = fields.Integer(required=True, strict=True, validate=validate.Range(-2, 40, error=FLOOR),
                           error_messages={"required": FLOOR, "invalid": FLOOR})
    room = fields.String(required=True, validate=validate.Regexp(r"^[0-9]{1,5}[A-Za-z]?$", error=ROOM),
                         error_messages={"required": ROOM})
    # m², two decimals: the lift vote (Civil Code Art. 278) counts floor area.
    floor_area = fields.Decimal(load_default=None, allow_none=True, places=2, as_string=True,
                                validate=validate.Range(1, 1000, error=N_("A floor area from 1 to 1000 m².")),
                                error_messages={"invalid": N_("A floor area from 1 to 1000 m².")})
    tenure = _choice(TENURES, N_("Owner or tenant."), load_default="owner")
    phones = fields.List(_phone(), load_default=list,
                         validate=validate.Length(0, 3, error=N_("At most 3 phones for a household.")))

    @validates_schema(skip_on_field_errors=False)
    def _place(self, data, **kwargs):
        errors = place_errors(data.get("building"), data.get("unit"))
        if errors:
            raise ValidationError(errors)


class ResidentIn(Schema):
    """A resident (住户) as the office registers them. Care needs and
    disability are sealed at rest by the community service."""

    name = fields.String(required=True, validate=validate.Length(1, 64, error=N_("A name of 1 to 64 characters.")),
                         error_messages={"required": N_("A name of 1 to 64 characters.")})
    sex = _choice(SEXES, N_("Choose female or male."), required=True)
    birth_year = fields.Integer(required=True, strict=True,
                                validate=validate.Range(1900, 2100, error=N_("A year of birth like 1948.")),
                                error_messages={"required": N_("A year of birth like 1948."),
                                                "invalid": N_("A year of birth like 1948.")})
    relation = _choice(RELATIONS, N_("Choose the relation to the head of household."), load_default="head")
    phone = _phone(load_default=None, allow_none=True)
    lives_alone = fields.Boolean(load_default=False)
    party_member = fields.Boolean(load_default=False)
    care_need = _choice(CARE_NEEDS, N_("Choose none, partly or fully dependent."), load_default="none")
    disability = fields.String(load_default=None, allow_none=True,
                               validate=validate.Length(0, 200, error=N_("At most 200 characters.")))
    reach_by = _choice(REACH_BY, N_("Choose how the resident prefers to be reached."), load_default="text")
    emergency_name = fields.String(load_default=None, allow_none=True,
                                   validate=validate.Length(1, 64, error=N_("A name of 1 to 64 characters.")))
    emergency_relation = fields.String(load_default=None, allow_none=True,
                                       validate=validate.Length(1, 16, error=N_("At most 16 characters.")))
    emergency_phone = _phone(load_default=None, allow_none=True)
    consent_contact = fields.Boolean(load_default=False)
    consent_on = fields.Date(load_default=None, allow_none=True,
                             error_messages={"invalid": N_("A date, e.g. 2026-12-24.")})
    consent_how = _choice(CONSENT_HOW, CONSENT_GIVEN, load_default=None, allow_none=True)

    @validates_schema
    def _consent(self, data, **kwargs):
        if data.get("consent_contact") and not (data.get("consent_on") and data.get("consent_how")):
            raise ValidationError({"consent_on" if not data.get("consent_on") else "consent_how": [CONSENT_GIVEN]})


class RegisterRow(Schema):
    """One row of a register file: a resident and their household's columns."""

    household = fields.Nested(HouseholdIn, required=True)
    resident = fields.Nested(ResidentIn, required=True)
    # The file left care needs and disability empty (an export without the
    # sealed columns): what the register holds stays.
    keep_sealed = fields.Boolean(load_default=False)


class StaffScope(Schema):
    """Who asks and where they may (services.common.auth.StaffClaims): the
    community service applies the same scope to a change as to a read."""

    actor = fields.String(required=True, validate=validate.Length(1, 64))
    role = fields.String(required=True, validate=validate.OneOf(("admin", "grid_leader", "hallway_leader")))
    grid = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 16))
    stairwells = fields.List(fields.String(validate=validate.Length(3, 25)), load_default=list,
                             validate=validate.Length(0, 200))


class RegisterEdit(StaffScope):
    """One change to the register from the console: add, edit or close a
    household or a resident. Closing keeps the history (moved out, deceased)."""

    change_id = fields.UUID(required=True)
    action = fields.String(required=True, validate=validate.OneOf(REGISTER_ACTIONS))
    household_id = Id(load_default=None, allow_none=True)
    resident_id = Id(load_default=None, allow_none=True)
    household = fields.Nested(HouseholdIn, load_default=None, allow_none=True)
    resident = fields.Nested(ResidentIn, load_default=None, allow_none=True)
    reason = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(CLOSE_REASONS))

    @validates_schema
    def _targets(self, data, **kwargs):
        action = data["action"]
        if action in ("edit_household", "close_household", "add_resident") and not data.get("household_id"):
            raise ValidationError("This change names its household.", "household_id")
        if action in ("edit_resident", "close_resident") and not data.get("resident_id"):
            raise ValidationError("This change names its resident.", "resident_id")
        if action in ("add_household", "edit_household") and not data.get("household"):
            raise ValidationError("This change carries the household.", "household")
        if action in ("add_resident", "edit_resident") and not data.get("resident"):
            raise ValidationError("This change carries the resident.", "resident")
        if action.startswith("close_") and not data.get("reason"):
            raise ValidationError("Closing says why.", "reason")
        if action == "close_household" and data.get("reason") != "moved_out":
            raise ValidationError("A household moves out.", "reason")


class RegisterImport(StaffScope):
    """A register file's good rows, checked in the console, for the community
    service to add or update (households by building, unit and room;
    residents by name and year of birth) in one transaction."""

    change_id = fields.UUID(required=True)
    row_numbers = fields.List(fields.Integer(strict=True, validate=validate.Range(2, 10**6)), required=True)
    rows = fields.List(fields.Nested(RegisterRow), required=True, validate=validate.Length(1, REGISTER_TASK_ROWS))

    @validates_schema
    def _aligned(self, data, **kwargs):
        if len(data["row_numbers"]) != len(data["rows"]):
            raise ValidationError("One row number per row.", "row_numbers")


PAYLOADS[(REGISTER_CHANGE, 1)] = RegisterEdit
PAYLOADS[(REGISTER_IMPORT, 1)] = RegisterImport

class ContractError(ValueError):
    """A message that does not meet the contract. Permanent: never retried."""

    def __init__(self, messages):
        super().__init__(str(messages))
        self.messages = messages


@functools.cache
def _schema(schema_class: type[Schema]) -> Schema:
    """One instance of each schema a process: building one copies its
    fields (55-130 µs a message at each end, py-spy), and an instance keeps
    nothing from one load or dump to the next."""
    return schema_class()


def envelope(task_name: str, data: dict, source: str, version: int = 1) -> dict:
    """Build a JSON-ready envelope, validating the payload on the way out so a
    producer bug fails at the producer, not in another service's worker."""
    schema = _schema(PAYLOADS[(task_name, version)])
    wire_data = schema.dump(data)
    try:
        schema.load(wire_data)
    except ValidationError as exc:
        raise ContractError(exc.messages) from exc
    return {
        "id": str(uuid.uuid4()),
        "type": task_name,
        "version": version,
        "occurred_at": datetime.now(timezone.utc).isoformat(),
        "source": source,
        "data": wire_data,
    }


def open_envelope(task_name: str, message) -> tuple[dict, dict]:
    """Validate an arriving envelope and its payload; return (envelope, data)."""
    if not isinstance(message, dict):
        raise ContractError({"_schema": ["message is not an object"]})
    try:
        env = _schema(Envelope).load(message)
    except ValidationError as exc:
        raise ContractError(exc.messages) from exc
    if env["type"] != task_name:
        raise ContractError({"type": [f"expected {task_name}"]})
    schema = PAYLOADS.get((task_name, env["version"]))
    if schema is None:
        raise ContractError({"version": [f"unknown version {env['version']}"]})
    try:
        data = _schema(schema).load(env["data"])
    except ValidationError as exc:
        raise ContractError({"data": exc.messages}) from exc
    return env, data


def mask_phone(phone: str) -> str:
    """138****1234: enough to recognise, not enough to call."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


def mask_url(url: str) -> str:
    """A channel URL is a secret (it carries bot keys and passwords): show
    the scheme and host only, e.g. wecombot://****, json://127.0.0.1:8080/****."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "****"
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    if scheme in ("json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos") and host:
        return f"{scheme}://{host}/****"
    return f"{scheme}://****"


def phone_digest(phone: str, key: str) -> str:
    """A keyed hash of a phone number (digits only): lets matching tell that
    a volunteer is the requester without ever seeing the number."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    return hmac.new(key.encode(), digits.encode(), hashlib.sha256).hexdigest()[:32]


# --- The community's programmes: visits (探访) and the daily check-in (报平安) ---
#
# The community service asks intake for a help request that carries a visit
# (requests.programme_request); intake sends it on to matching like any
# other, with the visit's reference, so that the visitor's outcome comes back
# to the community service (community.visit_outcome) from the volunteer
# portal (matching) or from a hallway leader in the console (intake).

PROGRAMME_REQUEST = "requests.programme_request"
VISIT_OUTCOME = "community.visit_outcome"
VISIT_PLAN = "community.visit_plan"
VISITS_DUE = "community.visits_due"  # beat: visits coming due, missed check-ins, overdue visits

# Why a programme request was made; intake words it (no typed text travels).
PROGRAMME_REASONS = ("scheduled", "missed_checkin", "needs_attention", "emergency", "nobody_home_twice", "overdue")
VISIT_OUTCOME_LABELS = {"done": N_("Visited: all well"), "nobody_home": N_("Nobody home"),
                        "needs_attention": N_("Needs attention"), "emergency": N_("Emergency")}
VISIT_OUTCOMES = tuple(VISIT_OUTCOME_LABELS)
VISIT_RHYTHMS = ("weekly", "twice_monthly", "monthly")
VISITORS = ("hallway_leader", "paired_volunteer", "any_volunteer")
VISIT_REF = r"^visit:[0-9]{1,10}$"


def link_digest(token: str) -> str:
    """What is kept of a resident's check-in link: its SHA-256, made by the
    console that shows the link and by the community service that opens it."""
    return hashlib.sha256(token.encode()).hexdigest()


class ProgrammeRequest(Schema):
    """A help request a programme makes for a resident in the register."""

    ref = fields.String(required=True, validate=validate.Regexp(r"^(visit|welfare):[0-9]{1,10}(:[a-z_]{1,24})?$"))
    category = fields.String(required=True, validate=validate.OneOf([c.code for c in CATEGORIES if c.programme]))
    reason = fields.String(required=True, validate=validate.OneOf(PROGRAMME_REASONS))
    urgency = fields.String(required=True, validate=validate.OneOf(URGENCIES))
    building = fields.String(required=True, validate=validate.Length(1, 16))
    unit = fields.String(required=True, validate=validate.Length(1, 8))
    room = fields.String(required=True, validate=validate.Length(1, 8))
    contact_name = fields.String(required=True, validate=validate.Length(1, 64))
    contact_phone = fields.String(required=True, validate=validate.Length(5, 20))
    elderly = fields.Boolean(load_default=False)
    disability = fields.Boolean(load_default=False)
    preferred_volunteer_id = Id(load_default=None, allow_none=True)
    # Straight to a leader on the grid chain instead of volunteers: the
    # hallway leader who visits, the office for an emergency.
    first_to = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(LEADER_LEVELS))
    # The visit's window (Asia/Shanghai day of its due date, or the plan's preferred times).
    window_start = fields.AwareDateTime(load_default=None, allow_none=True)
    window_end = fields.AwareDateTime(load_default=None, allow_none=True)


class VisitOutcome(Schema):
    """What the visitor found: from the volunteer portal or the console."""

    visit_ref = fields.String(required=True, validate=validate.Regexp(VISIT_REF))
    outcome = fields.String(required=True, validate=validate.OneOf(VISIT_OUTCOMES))
    note = fields.String(load_default="", validate=validate.Length(0, 500))
    actor = fields.String(required=True, validate=validate.Length(1, 64))


class VisitPlanIn(Schema):
    """A visit plan as the office sets it in the console (community's API takes the same)."""

    resident_id = Id(required=True, error_messages={"required": N_("Choose a resident.")})
    rhythm = fields.String(required=True, validate=validate.OneOf(VISIT_RHYTHMS, error=N_("Choose how often.")))
    visitor = fields.String(required=True, validate=validate.OneOf(VISITORS, error=N_("Choose who visits.")))
    volunteer_id = Id(load_default=None, allow_none=True)
    preferred_times = fields.String(load_default=None, allow_none=True,
                                    validate=validate.Length(0, 100, error=N_("Up to 100 characters.")))
    checkin_daily = fields.Boolean(load_default=False)
    active = fields.Boolean(load_default=True)
    # A new check-in link: the console makes the token and shows the link
    # once; only its SHA-256 travels and is kept.
    checkin_token_digest = fields.String(load_default=None, allow_none=True,
                                         validate=validate.Regexp(r"^[0-9a-f]{64}$"))

    @validates_schema
    def _paired(self, data, **kwargs):
        if data["visitor"] == "paired_volunteer" and not data.get("volunteer_id"):
            raise ValidationError({"volunteer_id": [N_("Choose the paired volunteer.")]})


PAYLOADS[(PROGRAMME_REQUEST, 1)] = ProgrammeRequest
PAYLOADS[(VISIT_OUTCOME, 1)] = VisitOutcome


class VisitPlanChange(VisitPlanIn, StaffScope):
    """A plan set in the console, with the asker's scope: a grid leader sets
    plans for residents of their grid only."""

    change_id = fields.UUID(required=True)


PAYLOADS[(VISIT_PLAN, 1)] = VisitPlanChange


# --- The office tries a dead delivery again (the console's request page) ---

DELIVERY_RETRY = "notify.retry_delivery"


class DeliveryRetry(Schema):
    delivery_id = Id(required=True)
    actor = fields.String(required=True, validate=validate.Length(1, 64))


PAYLOADS[(DELIVERY_RETRY, 1)] = DeliveryRetry


# --- Residents notify could not reach (SMS, calls) ---
#
# A resident's notification whose every channel failed for good (a dead SMS
# or call): the message stays in their in-app inbox, and intake records it
# on the request so that the grid leader sees it in the console.

RESIDENT_UNREACHABLE = "requests.resident_unreachable"


class ResidentUnreachable(Schema):
    request_id = fields.UUID(required=True)
    template = fields.String(required=True, validate=validate.OneOf(TEMPLATES))
    channel = fields.String(required=True, validate=validate.Length(1, 16))  # the last one tried: sms, voice, …
    error = fields.String(load_default="", validate=validate.Length(0, 300))


PAYLOADS[(RESIDENT_UNREACHABLE, 1)] = ResidentUnreachable


# --- Residents' SMS replies (上行), which notify receives from the gateway ---
#
# Notify knows which message a number last had that asks for a reply (the
# 回访 follow-up, the morning check-in text) and tells its owner what the
# resident answered; the text itself never travels (it is whatever the
# resident typed). A "TD"/退订 reply stops SMS and calls to that number at
# notify, and intake records it on the resident's requests.

RESIDENT_REPLIED = "requests.resident_replied"
REPLY_ANSWERS = ("satisfied", "not_solved", "stop")


class ResidentReplied(Schema):
    request_id = fields.UUID(required=True)
    answer = fields.String(required=True, validate=validate.OneOf(REPLY_ANSWERS))


PAYLOADS[(RESIDENT_REPLIED, 1)] = ResidentReplied

CHECKIN_REPLIED = "community.checkin_replied"


class CheckinReplied(Schema):
    """The resident answered the morning text: I'm fine today."""

    plan_id = Id(required=True)
    on = fields.Date(required=True)  # the day it counts for (Asia/Shanghai)


PAYLOADS[(CHECKIN_REPLIED, 1)] = CheckinReplied
