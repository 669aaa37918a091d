"""OpenAPI: the committed snapshot matches the code, and Schemathesis (a
tool we did not write) finds no server error and no response that breaks
the documented schema, on every JSON API of the three services."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from deploy.openapi_snapshot import text
from tests.conftest import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("requests", "volunteers", "notify", "community")
EXAMPLES = int(os.environ.get("LINLI_SCHEMATHESIS_EXAMPLES", "25"))  # per operation
# Rules OpenAPI cannot state (one field against another, against the
# registry, the clock or a file's content), which the documents state in
# words: the API's description and the description of the field concerned.
# Schema-valid data refused with these reasons only is no valid data refused.
STATED_IN_WORDS = (
    "NUL characters are not allowed.",
    "The end must be after the start.",
    "The end of the time window must be after its start.",
    "The time window is already over.",
    "That building has no such unit.",
    "That building has no such stairwell (unit).",
    "Only skills the volunteer has can be verified.",
    "That volunteer does not offer this service.",
    "Give both ends of the quiet hours.",
    "Not a channel URL Apprise understands",
    "Not a channel URL Linli understands",
    "Cannot render:",
    "Not a readable roster:",
)


@pytest.mark.parametrize("service", SERVICES)
def test_the_committed_snapshot_is_in_sync(service, monkeypatch, tmp_path):
    monkeypatch.setenv("LINLI_DATA_DIR", str(tmp_path))
    committed = (ROOT / "docs" / "openapi" / f"{service}.json").read_text(encoding="utf-8")
    assert text(service) == committed, f"run `make openapi` and commit docs/openapi/{service}.json"


@pytest.mark.parametrize("service", SERVICES)
def test_the_document_is_served_with_a_browsable_page(make_app, service):
    client = make_app(service).test_client()
    doc = client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.") and doc["paths"]
    page = client.get("/docs").get_data(as_text=True)
    first = next(iter(doc["paths"]))
    assert first in page


def _reasons(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [reason for item in items for reason in _reasons(item)]


def positive_data_accepted(ctx, response, case):
    """Schemathesis's positive_data_acceptance, but for rules stated in words."""
    if response.status_code == 422:
        body = response.json()
        reasons = _reasons(body.get("errors", {})) if isinstance(body, dict) else []
        if case.path == "/api/v1/volunteers/import" and "rows" in body:
            return None  # the roster's rows, refused one by one in the report (the file's description)
        if reasons and all(reason.startswith(STATED_IN_WORDS) for reason in reasons):
            return None
    return positive_data_acceptance(ctx, response, case)


@pytest.mark.parametrize("service", SERVICES)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(make_app, service):
    """Every operation of the service's own OpenAPI document, through its
    WSGI app with a fresh database, the staff token on every call."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", make_app(service))
    failures, tried = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        tried += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                   checks=[not_a_server_error, response_schema_conformance, status_code_conformance,
                                           positive_data_accepted])

        try:
            check()
        except Exception as exc:  # collect them all: one report per service
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert tried > 0
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("service", SERVICES)
def test_schemathesis_coverage_phase_finds_no_server_error(make_app, service):
    """Schemathesis's coverage phase: for every operation the boundary and
    negative values its schema implies (wrong types, missing fields, a JSON
    array where an object belongs…). None may be a server error, and every
    answer must be one the document describes."""
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_wsgi("/openapi.json", make_app(service))
    failures, tried = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        config = schema.config.generation_for(operation=operation)
        for case in schema.iter_coverage_cases(operation, generation_config=config,
                                               generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE]):
            tried += 1
            try:
                case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                       checks=[not_a_server_error, response_schema_conformance,
                                               status_code_conformance])
            except Exception as exc:  # collect them all: one report per service
                failures.append(f"{operation.method.upper()} {operation.path} {case.body!r:.80}: {exc}"[:600])
    assert tried > 0
    assert not failures, f"{len(failures)} of {tried} cases failed:\n\n" + "\n\n".join(failures[:20])
