"""Clocks that stop at night (services.common.clock): matching's deadlines
for ordinary requests, notify's quiet hours, intake's daytime take timer."""
from datetime import datetime, timedelta, timezone

import pytest

from services.common.clock import SHANGHAI, add_outside, quiet_hours
from services.requests.hotline import add_daytime_hours


def test_clocks_that_stop_in_the_quiet_hours():
    night = quiet_hours("21:00-07:00")
    at = datetime(2026, 11, 27, 12, 45, tzinfo=timezone.utc)  # 20:45 in Hangzhou

    def local(moment):
        return moment.astimezone(SHANGHAI).strftime("%d %H:%M")

    assert local(add_outside(at, timedelta(minutes=10), *night)) == "27 20:55"
    assert local(add_outside(at, timedelta(minutes=30), *night)) == "28 07:15"
    assert local(add_outside(at + timedelta(hours=2), timedelta(minutes=30), *night)) == "28 07:30"  # from inside
    assert local(add_outside(at, timedelta(hours=14, minutes=15), *night)) == "28 21:00"  # a whole day, to the minute
    assert local(add_outside(at, timedelta(hours=14, minutes=16), *night)) == "29 07:01"
    # A window that does not cross midnight, and none at all.
    assert local(add_outside(at, timedelta(hours=1), *quiet_hours("12:00-13:00"))) == "27 21:45"
    assert local(add_outside(at.replace(hour=4), timedelta(hours=1), *quiet_hours("12:00-13:00"))) == "27 14:00"
    assert add_outside(at, timedelta(hours=30), *quiet_hours("00:00-00:00")) == at + timedelta(hours=30)
    # Intake's take timer counts daytime hours with the same clock.
    assert local(add_daytime_hours(at, 2)) == "28 10:00"


def test_a_malformed_quiet_hours_setting_stops_a_service_from_starting(monkeypatch):
    from services.common.settings import ConfigError
    from services.notify import config
    monkeypatch.setenv("LINLI_QUIET_HOURS", "9pm-7am")
    with pytest.raises(ConfigError, match="LINLI_QUIET_HOURS must look like 21:00-07:00"):
        config.load()


def test_every_service_reads_the_time_from_its_apps_clock(make_app):
    """One injectable clock (services.common.clock.SetClock through
    make_app): intake's records, matching's and notify's reads all follow it."""
    from services.common.clock import SetClock, utcnow
    from tests.factories import resident_request

    at = datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)  # 10:00 in Hangzhou
    intake = make_app("requests", clock=SetClock(at))
    created = intake.test_client().post("/api/v1/requests", json=resident_request())
    assert created.status_code == 201, created.json
    tracked = intake.test_client().get(f"/api/v1/requests/{created.json['tracking_code']}").json
    assert tracked["created_at"] == "2026-11-27T02:00:00+00:00"
    assert [h["at"] for h in tracked["history"]] == ["2026-11-27T02:00:00+00:00"]
    for service in ("volunteers", "notify"):
        app = make_app(service, clock=SetClock(at))
        with app.app_context():
            assert utcnow() == at
    assert abs(utcnow() - datetime.now(timezone.utc)) < timedelta(seconds=5)  # outside an app: the system's
