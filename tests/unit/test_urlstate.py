"""URL state: links carry a view; bad or hostile values warn and fall back, never raise."""

import pytest

from odenet.app.urlstate import Param, encode, lesson_mode, parse, query_string

PARAMS = [
    Param("model", "choice", "rk4_1step", choices=lambda: ["rk4_1step", "euler_1step", "run:my-run"]),
    Param("integrator", "choice", "rk4", choices=["euler", "midpoint", "rk4"]),
    Param("steps", "int", 1, lo=1, hi=64),
    Param("t1", "float", 1.0, lo=0.01, hi=100),
    Param("channels", "int_list", [0, 1, 2, 3], lo=0, hi=63, max_items=8),
    Param("adaptive", "bool", False),
]


def test_a_link_sets_the_view_and_round_trips():
    values, warnings = parse({"model": "euler_1step", "integrator": "midpoint", "steps": "3",
                              "channels": "5,7,5", "adaptive": "1"}, PARAMS)
    assert warnings == []
    assert values == {"model": "euler_1step", "integrator": "midpoint", "steps": 3, "t1": 1.0, "channels": [5, 7],
                      "adaptive": True}
    q = encode(values, PARAMS)
    assert q == {"model": "euler_1step", "integrator": "midpoint", "steps": "3", "channels": "5,7", "adaptive": "1"}
    assert parse(q, PARAMS)[0] == values
    assert query_string({"steps": "3", "model": "a b"}) == "?steps=3&model=a+b"


@pytest.mark.parametrize("name, raw", [
    ("steps", "abc"), ("steps", "-3"), ("steps", "1e9"), ("steps", "3.5"), ("t1", "nan"), ("t1", "inf"),
    ("model", "../../etc/passwd"), ("model", "/root/.ssh/id_rsa"), ("model", "x" * 5000), ("integrator", "rk9"),
    ("channels", "1,2,999"), ("channels", ",".join(map(str, range(20)))), ("adaptive", "maybe"),
])
def test_invalid_or_hostile_values_warn_and_use_the_default(name, raw):
    values, warnings = parse({name: raw}, PARAMS)
    default = next(p.default for p in PARAMS if p.name == name)
    assert values[name] == default
    assert len(warnings) == 1 and warnings[0].startswith(f"Ignored {name}=") and len(warnings[0]) < 200


def test_lesson_flag():
    assert lesson_mode({"lesson": "1"}) and not lesson_mode({}) and not lesson_mode({"lesson": "0"})


def test_float_choices_round_trip_through_their_short_form():
    """A float choice is written short (0.0 -> "0", 1e-05 -> "1e-05"); reading the link back must give
    the same value, not a warning (it used to: "0" is not str(0.0))."""
    params = [Param("weight", "choice", 0.05, choices=[0.0, 1e-5, 0.05, 0.5]),
              Param("weights", "choice_list", [0.05], choices=[0.0, 1e-5, 0.05, 0.5])]
    for value in (0.0, 1e-5):
        values = {"weight": value, "weights": [value, 0.5]}
        query = encode(values, params)
        assert query["weight"] == f"{value:g}"
        assert parse(query, params) == (values, [])
    assert parse({"weight": "0.0"}, params) == ({"weight": 0.0, "weights": [0.05]}, [])  # typed by hand
