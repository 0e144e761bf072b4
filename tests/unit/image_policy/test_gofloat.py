"""Go strconv.ParseFloat, which decides whether a tag is numeric for Flux (reference §8)."""

from __future__ import annotations

import math

import pytest

from shared.image_policy.gofloat import parse_go_float


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1_000", 1000.0),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("1.", 1.0),
        ("+5", 5.0),
        ("00012", 12.0),
        ("0x1p4", 16.0),
        ("0x1.8p1", 3.0),
        ("-3", -3.0),
        ("1E-2", 0.01),
        ("1e-400", 0.0),  # underflow is not an error in Go
        ("Inf", math.inf),
        ("-infinity", -math.inf),
        ("+INF", math.inf),
    ],
)
def test_go_accepts(text: str, value: float) -> None:
    assert parse_go_float(text) == value


@pytest.mark.parametrize("text", ["nan", "NaN", "nAn"])
def test_nan_is_accepted_case_insensitively(text: str) -> None:
    parsed = parse_go_float(text)
    assert parsed is not None
    assert math.isnan(parsed)


@pytest.mark.parametrize(
    "text",
    [
        "1__0",
        "_1",
        "1_",
        "1_.5",
        "0x10",
        "0b101",
        "0o17",
        " 5",
        "5 ",
        "1e400",
        "+nan",
        "infin",
        "",
        ".",
        "1.5.3",
        "1e",
    ],
)
def test_go_rejects_where_python_float_may_not(text: str) -> None:
    assert parse_go_float(text) is None
