"""Numeric answers, rungs 1 and 2: exact enumeration against closed forms, thresholds, snapping, errors.

    # a -> b -> c -> r,  a -> c      (tests/query/toy.py: a in {lo, hi}, b in {0, 0.5, 1}, c in {calm, alarm}, r real)

    P(a=hi) = 0.6;  P(b | lo) = (0.5, 0.3, 0.2),  P(b | hi) = (0.1, 0.3, 0.6)
    P(c=alarm | a, b) = (0, 0.3, 0.8) for lo,  (0, 0.5, 0.9) for hi
"""

import json

import pytest

from engine.causal import inference
from engine.errors import QueryError
from engine.query import report
from tests.query.toy import ask, toy_scm

ALARM = 0.4 * (0.3 * 0.3 + 0.2 * 0.8) + 0.6 * (0.3 * 0.5 + 0.6 * 0.9)  # 0.514


@pytest.fixture(scope="module")
def scm():
    return toy_scm()


def one(scm, text):
    inference.seed(0)
    (answer,) = ask(scm, text)
    return answer


@pytest.mark.parametrize(
    "text, value",
    [
        ("P(c=alarm)", ALARM),
        ("P(c=alarm | do(b=1))", 0.4 * 0.8 + 0.6 * 0.9),
        ("P(a=hi | c=alarm)", 0.6 * 0.69 / ALARM),  # Bayes
        ("P(a=hi | do(b=1), c=alarm)", 0.6 * 0.9 / 0.86),  # evidence read in the intervened world
        ("P(a=hi | do(c=alarm))", 0.6),  # an intervention on a leaf changes nothing upstream
        ("P(b=1 | do(a=hi))", 0.6),
        ("P(c=alarm, a=lo)", 0.4 * 0.25),
        ("P(b < 0.3)", 0.4 * 0.5 + 0.6 * 0.1),  # thresholds compare values as they are: only b = 0 is below 0.3
        ("P(b <= 0.5)", 1 - (0.4 * 0.2 + 0.6 * 0.6)),
        ("P(b > 0.5 | a=hi)", 0.6),
        ("P(b != 0 | a=lo)", 0.5),
        ("E[b | a=hi]", 0.5 * 0.3 + 1.0 * 0.6),
        ("E[b]", 0.4 * (0.15 + 0.2) + 0.6 * 0.75),
        ("E[2 * b - 1 | a=hi]", 2 * 0.75 - 1),
        ("P(c=alarm | do(b=1)) - P(c=alarm | do(b=0.5))", 0.86 - (0.4 * 0.3 + 0.6 * 0.5)),
        ("1 - P(c=alarm)", 1 - ALARM),
        ("P(c=alarm) / P(a=hi)", ALARM / 0.6),
        ("P(c@do(b=1) = alarm)", 0.86),  # one world and no evidence: the same as | do(b=1)
        ("P(c@do(b=1) = alarm) - P(c@do(b=0) = alarm)", 0.86),
    ],
)
def test_exact_answers_by_hand(scm, text, value):
    answer = one(scm, text)
    assert answer.value == pytest.approx(value, abs=1e-12)
    assert answer.stderr == 0 and answer.draws == 0 and answer.method == "exact enumeration"


def test_kinds(scm):
    assert one(scm, "P(c=alarm)").kind == "probability"
    assert one(scm, "E[b]").kind == "expectation"
    assert one(scm, "P(b)").kind == "distribution"
    assert one(scm, "1 - P(c=alarm)").kind == "expression"
    assert one(scm, "PNS(c=alarm, do(b=1), do(b=0))").kind == "probability"


def test_distributions(scm):
    b = one(scm, "P(b | a=lo)")
    assert b.value == pytest.approx({0.0: 0.5, 0.5: 0.3, 1.0: 0.2}, abs=1e-12)  # keyed by the values as answers show them
    joint = one(scm, "P(a, c)")
    assert joint.value == pytest.approx({("lo", "calm"): 0.3, ("lo", "alarm"): 0.1, ("hi", "calm"): 0.6 - 0.414, ("hi", "alarm"): 0.414}, abs=1e-12)
    assert joint.details["nodes"] == ["a", "c"]


def test_equality_snaps_to_the_grid_and_says_so(scm):
    answer = one(scm, "P(b = 0.4)")  # the nearest grid value is 0.5
    assert answer.value == pytest.approx(0.3, abs=1e-12)
    assert answer.details["snapped"] == {"b = 0.4": "b = 0.5"}
    assert "read as b = 0.5" in report.line(answer)


def test_monte_carlo_where_a_node_is_real(scm):
    answer = one(scm, "P(r > 0.5 | a=hi)")
    p_alarm = 0.69  # P(c=alarm | a=hi); P(N(1, 1) > 0.5) = 0.6915, P(N(0, 1) > 0.5) = 0.3085
    truth = p_alarm * 0.6914624612740131 + (1 - p_alarm) * 0.3085375387259869
    assert answer.draws == 100_000 and answer.stderr > 0
    assert abs(answer.value - truth) < 4 * answer.stderr
    assert "exact posterior given a = hi" in answer.method
    summary = one(scm, "P(r | do(c=alarm))")
    assert set(summary.value) == {"mean", "sd", "q05", "q25", "q50", "q75", "q95"}
    assert summary.value["mean"] == pytest.approx(1.0, abs=0.02) and summary.value["q50"] == pytest.approx(1.0, abs=0.03)


def test_likelihood_weighting_reports_the_ess(scm):
    answer = one(scm, "P(c=alarm | r > 1.5) draws 20000")  # evidence on a real node: weighted draws
    assert "ESS" in answer.method and 0 < answer.details["ess"] < 20000
    # exact value: sum_c P(c) P(r > 1.5 | c) with P(N(1,1) > 1.5) = 0.3085, P(N(0,1) > 1.5) = 0.0668
    truth = ALARM * 0.3085375387259869 / (ALARM * 0.3085375387259869 + (1 - ALARM) * 0.06680720126885807)
    assert abs(answer.value - truth) < 4 * answer.stderr


def test_seeds_reproduce(scm):
    a, b = one(scm, "P(r > 0.5) draws 5000"), one(scm, "P(r > 0.5) draws 5000")
    assert a.value == b.value and a.draws == 5000
    inference.seed(1)
    (c,) = ask(scm, "P(r > 0.5) draws 5000")
    assert c.value != a.value


def test_json_fields(scm):
    records = report.write(ask(scm, "P(c=alarm | do(b=1))\nP(b)\nP(r | a=lo) draws 2000"), "/tmp/cq_test_numeric")
    for r in records:
        json.dumps(r)
        assert {"kind", "statement", "line", "value", "stderr", "method", "draws"} <= set(r)
    assert records[0]["value"] == pytest.approx(0.86) and records[0]["line"] == 1
    assert set(records[1]["value"]) == {"0.0", "0.5", "1.0"} and records[1]["chart"].endswith("02_distribution.png")
    assert records[2]["draws"] == 2000 and records[2]["stderr"] > 0


@pytest.mark.parametrize(
    "text, place, words",
    [
        ("P(d = 1)", "q.cq:1:3:", ["'d' is not a node", "a, b, c, r"]),
        ("P(c@do(z=1) = alarm)", "q.cq:1:8:", ["'z' is not a node"]),
        ("P(a < hi)", "q.cq:1:3:", ["'<' compares numbers", "use = or !="]),
        ("P(a = maybe)", "q.cq:1:3:", ["'maybe' is not a value of 'a'", "lo, hi"]),
        ("P(b = 3)", "q.cq:1:3:", ["outside the grid"]),
        ("P(b = big)", "q.cq:1:3:", ["takes a number"]),
        ("E[a]", "q.cq:1:3:", ["E[...] takes numbers", "P(a)"]),
        ("P(c=alarm) / P(c=alarm | do(b=0))", "q.cq:1:14:", ["division by zero"]),
        ("E[b / b]", "q.cq:1:7:", ["division by zero"]),
        ("P(a=hi | do(b=0), c=alarm)", "q.cq:1:10:", ["P(c = alarm) is 0 under do(b=0)"]),
        ("P(a = c)", "q.cq:1:3:", ["do not compare"]),
        ("P(area(a) > 3)", "q.cq:1:3:", ["reads an image", "'a' is a label"]),
        ("P(size(a) > 3)", "q.cq:1:3:", ["unknown statistic 'size'", "area, cx, cy"]),
        ("P(c=alarm | u)", "q.cq:1:13:", ["unknown variable 'u'"]),
        ("P(c=alarm | toy[600])", "q.cq:1:13:", ["0..599"]),
        ("P(c=alarm | toy[a=maybe])", "q.cq:1:17:", ["'maybe' is not a value"]),
    ],
)
def test_errors_say_where_and_what_is_valid(scm, text, place, words):
    with pytest.raises(QueryError) as e:
        ask(scm, text)
    message = str(e.value)
    assert message.startswith(place), message
    assert "^" in message
    for w in words:
        assert w in message, message


def test_mixing_do_styles_is_a_parse_error(scm):
    with pytest.raises(QueryError, match="either"):
        ask(scm, "P(c@do(b=1) = alarm | do(a=hi))")


def test_default_draws_keep_a_probabilitys_stderr_under_half_a_percent():
    from engine.query.estimands import IMAGE_DRAWS, IMAGE_EVENT_DRAWS, LABEL_DRAWS, default_draws
    from engine.query.query import Comparison, Constant, Leaf, Population, Quantity

    area, y = Quantity("img", (), "area"), Quantity("y")
    event = lambda q: Leaf("probability", (Comparison(q, ">", Constant(0.5), False),), Population(), None)  # noqa: E731
    mean = Leaf("expectation", area, Population(), None)
    assert default_draws([event(y)]) == LABEL_DRAWS and 0.5 / LABEL_DRAWS**0.5 < 0.005
    assert default_draws([mean]) == IMAGE_DRAWS
    assert default_draws([mean, event(area)]) == IMAGE_EVENT_DRAWS and 0.5 / IMAGE_EVENT_DRAWS**0.5 <= 0.005
