"""What a request's status is called on the resident's pages and in the
staff console, in the resident's language."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

STATUS_LABELS = {
    "submitted": _l("Submitted"),
    "matching": _l("Looking for a volunteer"),
    "offered": _l("Offered to a volunteer"),
    "assigned": _l("Assigned"),
    "in_progress": _l("In progress"),
    "completed": _l("Completed"),
    "closed": _l("Closed"),
    "cancelled": _l("Cancelled"),
    "escalated": _l("Passed to community staff"),
}
