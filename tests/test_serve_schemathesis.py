"""Property-based: requests generated from the app's own OpenAPI schema never get a 5xx.

Positive cases (fitting the schema) use the served model's name half the time, so real
generations run; negative cases (violating the schema) must all be answered with a 4xx. Every
case is checked (no 5xx, an OpenAI error body on every 4xx). Schemathesis never generates lone
UTF-16 surrogates (it drops them from its alphabet), so a third of the bodies get one ("\\ud800",
valid JSON) inserted into a string: that must be a 400, never a 500.
"""

from __future__ import annotations

import copy
import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode

from kositp.serve.config import ServeConfig
from kositp.serve.server import ServerThread

OPERATIONS = ["POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models", "GET /v1/models/{model_id}",
              "GET /ready", "GET /health", "GET /metrics"]
LONE_SURROGATE = "\ud800"


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


def _integral(value):
    """JSON Schema counts 3.0 as an integer; OpenAI's API (and this one) wants 3. Positive cases get 3."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _string_slots(value, path=()):
    """Paths of every string value in a JSON body."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _string_slots(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _string_slots(v, (*path, i))


def _insert_surrogate(body, pick: int):
    slots = list(_string_slots(body))
    if not slots:
        return body
    *parents, last = slots[pick % len(slots)]
    holder = body
    for key in parents:
        holder = holder[key]
    text = holder[last]
    holder[last] = text[: len(text) // 2] + LONE_SURROGATE + text[len(text) // 2:]
    return body


def _prepare(case, use_served: bool, surrogate: int | None, positive: bool):
    """(case, body with a lone surrogate or None). Schemathesis cannot carry such a body itself (it
    re-validates bodies with a validator that refuses surrogates), so the test sends that one."""
    if isinstance(case.body, dict):
        if positive:
            case.body = _integral(case.body)
        if use_served and "model" in case.body:
            case.body["model"] = "tiny"
    if use_served and case.path_parameters and "model_id" in case.path_parameters:
        case.path_parameters["model_id"] = "tiny"
    if surrogate is not None and isinstance(case.body, (dict, list)) and any(_string_slots(case.body)):
        return case, _insert_surrogate(copy.deepcopy(case.body), surrogate)
    return case, None


# Negative cases need something to violate: the GET endpoints take no parameters or body.
CASES = [(op, GenerationMode.POSITIVE) for op in OPERATIONS] + [
    (op, GenerationMode.NEGATIVE) for op in OPERATIONS if op.startswith("POST")]


@pytest.mark.parametrize(("operation", "mode"), CASES)
def test_generated_requests_never_get_a_server_error(api_url, operation, mode):
    op = _operation(api_url, operation)
    seen: dict[int, int] = {}
    positive = mode == GenerationMode.POSITIVE
    surrogate = st.one_of(st.none(), st.none(), st.integers(0, 1000))
    strategy = st.tuples(op.as_strategy(generation_mode=mode), st.booleans(), surrogate).map(
        lambda t: _prepare(*t, positive=positive))
    surrogates_sent = []

    @given(case=strategy)
    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        case, surrogate_body = case
        if surrogate_body is None:
            response = case.call(base_url=api_url, timeout=60)
        else:  # json.dumps escapes the surrogate as "\\ud800": valid JSON on the wire
            response = httpx.post(api_url + case.path, content=json.dumps(surrogate_body),
                                  headers={"Content-Type": "application/json"}, timeout=60)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{operation} {case.body!r} -> {response.text[:500]}"
        if response.status_code >= 400 and response.status_code != 405:
            err = response.json()["error"]
            assert err["message"] and err["type"]
        if surrogate_body is not None:
            surrogates_sent.append(response.status_code)
            assert response.status_code == 400, f"{surrogate_body!r} -> {response.text[:300]}"
            assert "surrogate" in response.json()["error"]["message"]

    check()
    print(operation, mode, "status counts:", seen)
    if operation.startswith("POST") and positive:
        assert seen.get(200, 0) > 0, f"no generated request reached the model: {seen}"
    if operation.startswith("POST"):
        assert surrogates_sent, "no generated request carried a lone surrogate"

