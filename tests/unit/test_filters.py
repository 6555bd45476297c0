"""Personalize filter expressions: grammar (valid and invalid) and semantics at serving."""

import pandas as pd
import pytest
from test_models import T0, planted_interactions, planted_items

from local.personalize.filters import FilterError, compile_filter, parse_filter_value
from local.personalize.serving import RequestError, get_recommendations
from local.personalize.training import TrainingData, train_solution_version


@pytest.fixture(scope="module")
def model():
    items = planted_items()
    items.loc[items["ITEM_ID"] == "a5", "GENRES"] = "GroupA|Comedy"
    items.loc[items["ITEM_ID"] == "a6", "GENRES"] = "Comedy"
    interactions = planted_interactions()
    interactions.loc[interactions.index[:3], "EVENT_TYPE"] = "purchase"  # u0's first three events
    users = pd.DataFrame({"USER_ID": ["u1", "u2"], "AGE": ["15", "40"], "TIER": ["gold", "free"]})
    m, _ = train_solution_version(
        "aws-user-personalization", TrainingData(interactions, items, users), {}, "FULL", None
    )
    return m


def allowed(model, expression, user_id="u1", values=None):
    mask = compile_filter(expression).allowed(model, user_id=user_id, filter_values=values)
    return {item for item, ok in zip(model.catalog.item_ids.tolist(), mask, strict=True) if ok}


@pytest.mark.parametrize(
    "expression",
    [
        'INCLUDE ItemID WHERE Items.GENRES IN ("Comedy")',
        'EXCLUDE ItemID WHERE Items.GENRES NOT IN ("A", "B") AND Items.PRICE >= 3',
        "INCLUDE ItemID WHERE Items.PRICE < $MAXPRICE OR Items.PRICE > 20",
        'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")',
        'INCLUDE ItemID WHERE Items.GENRES IN ($G) | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")',
        'EXCLUDE ItemID WHERE Items.GENRES IN ("GroupB") IF CurrentUser.AGE < 18 AND CurrentUser.TIER IN ("gold")',
        'include itemid where items.genres in ("x")',
    ],
)
def test_valid_expressions_compile(expression):
    assert compile_filter(expression).expressions


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty"),
        ('KEEP ItemID WHERE Items.GENRES IN ("a")', "INCLUDE or EXCLUDE"),
        ('INCLUDE ItemID Items.GENRES IN ("a")', "expected WHERE"),
        ('INCLUDE ItemID WHERE GENRES IN ("a")', "dataset field"),
        ('INCLUDE ItemID WHERE Items.GENRES IN "a"', "parenthesised"),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("a"', "missing '\\)'"),
        ('INCLUDE ItemID WHERE Items.GENRES LIKE ("a")', "IN, NOT IN or a comparison"),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("a") AND Interactions.EVENT_TYPE IN ("click")', "first one"),
        ('INCLUDE ItemID WHERE Interactions.ITEM_ID IN ("a")', "EVENT_TYPE"),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("a") IF Items.PRICE > 2', "IF condition"),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("a") |', "Empty expression"),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("a") extra', "unexpected"),
        ("INCLUDE ItemID WHERE Items.PRICE < ;", "unexpected character"),
    ],
)
def test_invalid_expressions_name_the_problem(expression, message):
    with pytest.raises(FilterError, match=message):
        compile_filter(expression)


def test_categorical_multi_values_numeric_and_not_in(model):
    assert allowed(model, 'INCLUDE ItemID WHERE Items.GENRES IN ("Comedy")') == {"a5", "a6"}
    assert allowed(model, 'INCLUDE ItemID WHERE Items.PRICE < 2 AND Items.GENRES IN ("GroupB")') == {
        "b0",
        "b1",
    }
    low_or_high = allowed(model, "INCLUDE ItemID WHERE Items.PRICE <= 0 OR Items.PRICE > 28")
    assert low_or_high == {"a0", "b0", "a29", "b29"}
    not_a = allowed(model, 'EXCLUDE ItemID WHERE Items.GENRES NOT IN ("GroupA")')
    assert not_a == {f"a{i}" for i in range(30) if i != 6} | {"a5"}


def test_placeholders_bind_filter_values_and_missing_ones_skip_the_expression(model):
    expr = "INCLUDE ItemID WHERE Items.GENRES IN ($GENRE)"
    assert allowed(model, expr, values={"GENRE": '"Comedy","GroupB"'}) == {"a5", "a6"} | {
        f"b{i}" for i in range(30)
    }
    assert allowed(model, expr) == set(model.catalog.item_ids.tolist())
    assert allowed(model, "INCLUDE ItemID WHERE Items.PRICE < $P", values={"P": "1"}) == {"a0", "b0"}
    assert parse_filter_value('"a \\"b\\"","c"') == ['a "b"', "c"]


def test_interactions_filter_uses_event_types_of_the_user(model):
    assert allowed(
        model, 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")', user_id="u0"
    ) == set(planted_interactions().head(3)["ITEM_ID"])
    everything_seen = allowed(model, 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', user_id="u0")
    assert everything_seen.isdisjoint(set(planted_interactions().query("USER_ID == 'u0'")["ITEM_ID"]))
    model.record_event("u0", "b7", "purchase", T0 + 99 * 86400)  # a live event is visible to filters
    assert "b7" in allowed(
        model, 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")', user_id="u0"
    )


def test_include_exclude_combination_and_if_conditions(model):
    combined = allowed(
        model, 'INCLUDE ItemID WHERE Items.GENRES IN ("Comedy") | EXCLUDE ItemID WHERE Items.PRICE = 6'
    )
    assert combined == {"a5"}
    union = allowed(model, "INCLUDE ItemID WHERE Items.PRICE = 1 | INCLUDE ItemID WHERE Items.PRICE = 2")
    assert union == {"a1", "b1", "a2", "b2"}
    minors = 'EXCLUDE ItemID WHERE Items.GENRES IN ("GroupB") IF CurrentUser.AGE < 18'
    assert not any(i.startswith("b") for i in allowed(model, minors, user_id="u1"))  # age 15
    assert any(i.startswith("b") for i in allowed(model, minors, user_id="u2"))  # age 40
    assert any(i.startswith("b") for i in allowed(model, minors, user_id="unknown"))


def test_filters_apply_at_serving(model):
    recs = get_recommendations(
        model,
        user_id="u1",
        num_results=5,
        filter="INCLUDE ItemID WHERE Items.GENRES IN ($G)",
        filter_values={"G": '"GroupB"'},
    )
    assert recs and all(r["itemId"].startswith("b") for r in recs)
    with pytest.raises(RequestError, match="filterArn"):
        get_recommendations(model, user_id="u1", filter_values={"G": '"x"'})
    with pytest.raises(RequestError, match="Invalid filter"):
        get_recommendations(model, user_id="u1", filter="INCLUDE nothing")


def test_current_item_values_come_from_the_requested_item(model):
    f = compile_filter("INCLUDE ItemID WHERE Items.GENRES IN (CurrentItem.GENRES)")
    mask = f.allowed(model, user_id="u1", item_id="a6")  # a6 is only "Comedy"
    assert {i for i, ok in zip(model.catalog.item_ids.tolist(), mask, strict=True) if ok} == {"a5", "a6"}
    assert not f.allowed(model, user_id="u1", item_id="unknown").any()
