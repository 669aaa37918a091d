"""The staff console (/staff): the request queue, a request's full story
and the actions on it, proxy intake, the dashboard, volunteers and the
contact access log, the office's pages — a module per page family, all on one blueprint.

Everything here is scoped (staff.Scope): a grid leader never sees, nor acts
on, a request outside their grid — a request by id outside the scope is a
403. What other services hold is read over their HTTP APIs with the service
token; what they must change is asked for through the outbox (tasks)."""
# Their pages join the blueprint; accounts, office, stations, hours and roster are the office's (办公).
from . import (  # noqa: F401
    access,
    accounts,
    auth,
    calls,
    coins,
    dashboard,
    detail,
    hours,
    office,
    proxy,
    queue,
    register,
    roster,
    stations,
    visits,
    volunteers,
)
from .blueprint import console

__all__ = ["console"]
