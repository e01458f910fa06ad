"""runyard's run filter grammar: what the studio's search box and the server read."""

from __future__ import annotations

import pytest

from runyard.errors import UserError
from runyard.records import Condition
from runyard.run_filter import MAX_CLAUSES, MAX_FILTER, parse_run_filter


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("   ", ()),
        ("tags.team = vision", (Condition("tag", "team", "=", "vision"),)),
        ("tags.team = 'computer vision'", (Condition("tag", "team", "=", "computer vision"),)),
        ("TAGS.team != vision", (Condition("tag", "team", "!=", "vision"),)),
        ("properties.lr >= '0.01'", (Condition("property", "lr", ">=", "0.01"),)),
        ("props.lr", (Condition("property", "lr", "IS NOT NULL", None),)),
        ("tags.draft is null", (Condition("tag", "draft", "IS NULL", None),)),
        ("metrics.acc > 0.9", (Condition("metric", "acc", ">", 0.9),)),
        ("metrics.acc", (Condition("metric", "acc", "IS NOT NULL", None),)),
        ("status = running", (Condition("attribute", "status", "=", "Running"),)),
        (
            "status in (Failed, canceled)",
            (Condition("attribute", "status", "IN", ("Failed", "Canceled")),),
        ),
        ("number < 10", (Condition("attribute", "number", "<", 10.0),)),
        ("submitted_by = 'ci-bot'", (Condition("attribute", "submitted_by", "=", "ci-bot"),)),
        ("tags.`data set` = mnist", (Condition("tag", "data set", "=", "mnist"),)),
        ("display_name like 'res%'", (Condition("attribute", "display_name", "LIKE", "res%"),)),
        ("resnet", (Condition("attribute", "display_name", "ILIKE", "%resnet%"),)),
        ("'big model'", (Condition("attribute", "display_name", "ILIKE", "%big model%"),)),
        (
            "tags.team = vision AND metrics.acc > 0.9 and resnet",
            (
                Condition("tag", "team", "=", "vision"),
                Condition("metric", "acc", ">", 0.9),
                Condition("attribute", "display_name", "ILIKE", "%resnet%"),
            ),
        ),
    ],
)
def test_filters_read_as_conditions(text, expected):
    assert parse_run_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metrics.acc > high", "compared with a number"),
        ("metrics.acc > NaN", "compared with a number"),
        ("status = Done", "not a status"),
        ("colour = red", "not tags.<key>"),
        ("tags.team = vision or tags.team = nlp", "joined with 'and'"),
        ("tags.team =", "ends too early"),
        ("tags.team = (", "expected a value"),
        ("status", "compare status with a value"),
        ("tags.x in 'a'", "list in parentheses"),
        ("metrics.acc like 'x%'", "compared with a number"),
        ("tags.x = 'open", "cannot read it"),
        ("tags.a = \x00", "cannot read it"),
        ("attributes.colour = x", "not a run attribute"),
    ],
)
def test_bad_filters_say_what_is_wrong(text, message):
    with pytest.raises(UserError, match=message):
        parse_run_filter(text)


def test_filters_are_bounded():
    with pytest.raises(UserError, match=f"at most {MAX_FILTER}"):
        parse_run_filter("a" * (MAX_FILTER + 1))
    many = " and ".join(f"tags.k{i}" for i in range(MAX_CLAUSES + 1))
    with pytest.raises(UserError, match=f"more than {MAX_CLAUSES} clauses"):
        parse_run_filter(many)
    assert len(parse_run_filter(" and ".join(f"tags.k{i}" for i in range(MAX_CLAUSES)))) == 25
    with pytest.raises(UserError, match="is text"):
        parse_run_filter(["tags.a"])
