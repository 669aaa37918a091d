"""The short chaos run of the default suite (make chaos N=2000 runs the long
one): 200 requests through the HTTP API while workers are killed, Redis is
stopped, restarted and frozen, and the volunteers' webhook fails."""
import pytest

from tests import chaos

pytestmark = pytest.mark.integration


def test_nothing_lost_nothing_doubled_under_faults(tmp_path):
    report = chaos.run(n=200, rate=10.0, seed=7, backend="sqlite", workdir=tmp_path, drain_timeout=240)
    chaos.print_report(report)
    assert report["accepted"] > 0 and report["per_fault"], report
    assert report["hung"] == 0, report["refused"]
    assert report["lost"] == 0, report["unsettled"]
    assert set(report["statuses"]) <= chaos.SETTLED
    for invariant in ("duplicate_offers", "duplicate_deliveries", "duplicate_notifications",
                      "volunteers_over_capacity", "requests_with_two_assignments"):
        assert report[invariant] == 0, invariant
