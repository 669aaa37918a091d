"""Intake's configuration: the shared defaults read from the environment
(services.common.settings), the Open311 keys given by the environment
(staff issue more through the API), the hotline timers, retention and the
staff sign-in limits."""
from services.common.roster import roster_settings
from services.common.settings import base_config, integer, json_object, text


def load() -> dict:
    cfg = base_config("requests")
    cfg["OPEN311_API_KEYS"] = text("LINLI_OPEN311_API_KEYS", "")
    # Matching answers a request within seconds; silence this long means the message was lost.
    cfg["RESEND_AFTER_SECONDS"] = integer("LINLI_RESEND_AFTER_SECONDS", 120)
    # Per-category timer overrides (hotline.py has the defaults), e.g.
    # {"parking": {"complete_days": 20}, "haircut": {"take_hours": 4}}.
    cfg["TIMERS"] = json_object("LINLI_TIMERS", '{"parking": {"complete_days": 20}}')
    # The follow-up (回访) is sent this long after completion.
    cfg["FOLLOW_UP_AFTER_HOURS"] = integer("LINLI_FOLLOW_UP_AFTER_HOURS", 24)
    # Residents' personal data of requests finished this many days ago is anonymised.
    cfg["RETENTION_DAYS"] = integer("LINLI_RETENTION_DAYS", 180)
    # Staff sign-in: failures allowed per account and per address in the window.
    cfg["LOGIN_LIMIT_ACCOUNT"] = integer("LINLI_LOGIN_LIMIT_ACCOUNT", 5)
    cfg["LOGIN_LIMIT_ADDRESS"] = integer("LINLI_LOGIN_LIMIT_ADDRESS", 20)
    cfg["LOGIN_WINDOW_SECONDS"] = integer("LINLI_LOGIN_WINDOW_SECONDS", 900)
    # make run's demo staff accounts (office, grid1, hall-3-1) sign in with this.
    cfg["DEMO_STAFF_PASSWORD"] = text("LINLI_DEMO_STAFF_PASSWORD")
    cfg["STAFF_SESSION_HOURS"] = integer("LINLI_STAFF_SESSION_HOURS", 10)
    # How often the tracking page asks for news (milliseconds) when scripts run.
    cfg["TRACK_POLL_MS"] = integer("LINLI_TRACK_POLL_MS", 5000)
    # The console's roster upload reads and checks a file as matching would.
    cfg.update(roster_settings())
    return cfg
