"""Property-based: requests generated from the app's own OpenAPI schema never get a 5xx.

Positive cases (fitting the schema) use the served model's name half the time, so real
generations run; negative cases (violating the schema) must all be answered with a 4xx.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode

from kositp.serve.config import ServeConfig
from kositp.serve.server import ServerThread

OPERATIONS = ["POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models", "GET /ready", "GET /health",
              "GET /metrics"]


@pytest.fixture(scope="module")
def api_url(tiny_model_dir):
    # Small caps keep every generated request cheap on the tiny model; the caps themselves are under test.
    cfg = ServeConfig(model=str(tiny_model_dir), served_model_name="tiny", port=0, max_tokens_limit=8,
                      default_max_tokens=4, max_messages=8, max_message_chars=400, max_prompt_tokens=256)
    with ServerThread(cfg) as url:
        yield url


def _operation(url: str, name: str):
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    return {f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in schema.get_all_operations())}[name]


def _with_served_model(case, use_served: bool):
    if use_served and isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = "tiny"
    return case


# Negative cases need something to violate: the GET endpoints take no parameters or body.
CASES = [(op, GenerationMode.POSITIVE) for op in OPERATIONS] + [
    (op, GenerationMode.NEGATIVE) for op in OPERATIONS if op.startswith("POST")]


@pytest.mark.parametrize(("operation", "mode"), CASES)
def test_generated_requests_never_get_a_server_error(api_url, operation, mode):
    op = _operation(api_url, operation)
    seen: dict[int, int] = {}
    strategy = st.tuples(op.as_strategy(generation_mode=mode), st.booleans()).map(lambda t: _with_served_model(*t))

    @given(case=strategy)
    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call(base_url=api_url, timeout=60)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{operation} {case.body!r} -> {response.text[:500]}"
        if response.status_code >= 400 and response.status_code != 405:
            err = response.json()["error"]
            assert err["message"] and err["type"]

    check()
    print(operation, mode, "status counts:", seen)
    if operation.startswith("POST") and mode == GenerationMode.POSITIVE:
        assert seen.get(200, 0) > 0, f"no generated request reached the model: {seen}"
