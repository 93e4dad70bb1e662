"""Requests generated from the OpenAPI document a real ``bentoml serve`` publishes.

schemathesis is not installed (not a dependency of the project), so the document
(``/docs.json``) is turned into Hypothesis strategies here: for each POST
operation, bodies that follow its request schema (BentoML documents an
ndarray as ``tensor`` / ``numpy-array``, and a 2-D input as a flat array of
numbers), and bodies that break it (a required field missing, extra fields,
wrong types, not an object, not JSON); with a pooled valid key, no key, or a
junk key. Every answer must be a 2xx or the contract's error, never a 5xx;
a 2xx is the tier's view of (n, 10) scores. The open GET routes answer
without a key.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bento_invguard import generate_key

from .conftest import TIERS, Served
from .contract import rejection

pytestmark = pytest.mark.integration

MAX_ROWS_DRAWN = 4
N_CLASSES = 10


def resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        *_, name = schema["$ref"].split("/")
        schema = doc["components"]["schemas"][name]
    return schema


def conforming(schema: dict[str, Any], doc: dict[str, Any], rows: Any, depth: int = 0) -> Any:
    """A strategy for values that follow ``schema`` (the subset BentoML emits)."""
    schema = resolve(schema, doc)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([conforming(s, doc, rows, depth + 1) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "tensor" or schema.get("format") == "numpy-array":
        return tensors(rows)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: conforming(v, doc, rows, depth + 1) for k, v in props.items() if k in required},
            optional={
                k: conforming(v, doc, rows, depth + 1)
                for k, v in props.items()
                if k not in required
            },
        )
    if kind == "array":
        items = schema.get("items", {})
        return st.lists(conforming(items, doc, rows, depth + 1), max_size=6 if depth < 3 else 1)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "integer":
        return st.integers()
    if kind == "string":
        return st.text(max_size=10)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return st.one_of(st.none(), st.integers(), st.text(max_size=5))


def tensors(rows: Any) -> st.SearchStrategy[Any]:
    """(n, 64) rows: real digits, some with one pixel changed (in or out of range), and
    odd widths. JSON has no NaN, so BentoML's schema cannot carry one."""
    digit = st.sampled_from(range(len(rows))).map(lambda i: [float(v) for v in rows[i]])
    pixel = st.one_of(
        st.integers(0, 16).map(float), st.sampled_from([-1.0, 16.5, 1e308, -0.0, 3.25])
    )

    @st.composite
    def row(draw: st.DrawFn) -> list[float]:
        values = draw(digit)
        if draw(st.integers(0, 3)) == 0:
            values[draw(st.integers(0, 63))] = draw(pixel)
        width = draw(st.sampled_from([64] * 8 + [63, 65, 1]))
        return [*values, 0.0][:width]

    return st.lists(row(), min_size=1, max_size=MAX_ROWS_DRAWN)


def broken(schema: dict[str, Any], doc: dict[str, Any], rows: Any) -> st.SearchStrategy[Any]:
    """Values that break ``schema``: a required field missing, extras, wrong types."""
    schema = resolve(schema, doc)
    props = schema.get("properties", {})
    required = list(schema.get("required", ()))
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.text(max_size=8),
        st.integers(),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    whole = conforming(schema, doc, rows)
    options = [
        junk,
        st.lists(junk, max_size=3),
        whole.flatmap(lambda v: st.just({k: x for k, x in v.items() if k not in required[:1]})),
        st.tuples(whole, st.text(min_size=1, max_size=8), junk).map(lambda t: {**t[0], t[1]: t[2]}),
    ]
    if props:
        options.append(
            st.tuples(whole, st.sampled_from(sorted(props)), junk).map(
                lambda t: {**t[0], t[1]: t[2]}
            )
        )
    return st.one_of(options)


@pytest.fixture(scope="module")
def openapi(guarded_server: Served) -> dict[str, Any]:
    response = guarded_server.client.get("/docs.json")
    assert 200 == response.status_code, response.text
    doc: dict[str, Any] = response.json()
    return doc


@pytest.fixture(scope="module")
def pool(guarded_server: Served) -> Iterator[Iterator[tuple[str, str]]]:
    """(tier, key) in turn over every pooled key (limits and the monitor are per key)."""
    ids = sorted(k for k in guarded_server.keys if k.split("-")[2] != "15")
    yield itertools.cycle([(key_id.split("-")[1], guarded_server.keys[key_id]) for key_id in ids])


def test_the_document_lists_the_guarded_apis(openapi: dict[str, Any]) -> None:
    posts = {path for path, ops in openapi["paths"].items() if "post" in ops}
    assert {"/predict", "/logits"} <= posts


def test_open_routes_of_the_document_need_no_key(
    guarded_server: Served, openapi: dict[str, Any]
) -> None:
    gets = [path for path, ops in openapi["paths"].items() if "get" in ops]
    assert gets
    for path in gets:
        assert 200 == guarded_server.client.get(path).status_code, path


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_requests_generated_from_the_openapi_document(
    guarded_server: Served,
    openapi: dict[str, Any],
    pool: Iterator[tuple[str, str]],
    digit_rows: np.ndarray,
    data: st.DataObject,
) -> None:
    operations = sorted(
        (path, ops["post"])
        for path, ops in openapi["paths"].items()
        if "post" in ops and "requestBody" in ops["post"]
    )
    path, operation = data.draw(st.sampled_from(operations), label="operation")
    # The operation's own body schema documents an ndarray as a flat array of numbers;
    # components["<api>__Input"] has it as a tensor. Both are the service's document.
    schemas = [operation["requestBody"]["content"]["application/json"]["schema"]]
    tensor_form = openapi["components"]["schemas"].get(f"{operation['x-bentoml-name']}__Input")
    if tensor_form is not None:
        schemas.append(tensor_form)
    schema = data.draw(st.sampled_from(schemas), label="schema")
    form = data.draw(st.sampled_from(["conforming"] * 3 + ["broken", "raw"]), label="form")
    if form == "raw":
        content = data.draw(
            st.one_of(st.binary(max_size=200), st.just(b""), st.just(b"{")), label="raw"
        )
    else:
        value = data.draw(
            conforming(schema, openapi, digit_rows)
            if form == "conforming"
            else broken(schema, openapi, digit_rows),
            label="body",
        )
        content = json.dumps(value).encode()
    who = data.draw(st.sampled_from(["pool"] * 4 + ["none", "junk"]), label="who")
    headers = {"content-type": "application/json"}
    tier = None
    if who == "pool":
        tier, key = next(pool)
        headers["Authorization"] = f"Bearer {key}"
    elif who == "junk":
        junk = generate_key()
        guarded_server.presented.add(junk)
        headers["X-API-Key"] = junk
    response = guarded_server.client.post(path, content=content, headers=headers)
    refused = rejection(response)
    event(f"{path} {response.status_code} {refused['error'] if refused else 'ok'}")
    if refused is None:
        assert tier is not None and (path == "/predict" or tier == "trusted"), response.text
        out = np.asarray(response.json(), dtype=float)
        assert out.ndim == 2 and out.shape[1] == N_CLASSES, out.shape
        if tier == "public":
            assert set(np.unique(out)) <= {0.0, 1.0}
        if tier == "partner":
            assert ((out != 0).sum(axis=1) <= 3).all()


def test_every_tier_is_exercised(guarded_server: Served) -> None:
    """Sanity: the pool covers all tiers (so 2xx checks above can run for each)."""
    assert {key_id.split("-")[1] for key_id in guarded_server.keys} == set(TIERS)
