"""The column mapper: names, synonyms and column maps, the same for every operation and the ledger; ambiguity refused."""

from __future__ import annotations

import pandas as pd
import pytest

from backd_ops.columns import SYNONYMS, header_key, map_columns, parse_mapping
from backd_ops.errors import InputError, set_option_style
from backd_ops.ledger import OPTIONAL, REQUIRED
from backd_ops.operations import OPERATIONS


def test_headers_match_whatever_their_case_spacing_and_punctuation():
    frame = pd.DataFrame({"ORDER ID": ["BO-1"], " refund-amount ($) ": ["5"], "\ufeffNotes": ["x"]})
    mapped = map_columns(frame, ["backd_order_id", "refund_amount"], ["merchant_order_id"])
    assert list(mapped.frame.columns) == ["backd_order_id", "refund_amount"]
    assert [(m.header, m.column, m.how) for m in mapped.matches] == [
        ("ORDER ID", "backd_order_id", "synonym"), (" refund-amount ($) ", "refund_amount", "name")]
    assert mapped.unused == ("\ufeffNotes",)
    assert mapped.describe() == "ORDER ID → backd_order_id,  refund-amount ($)  → refund_amount; not used: \ufeffNotes"


def test_a_column_map_wins_and_is_checked():
    frame = pd.DataFrame({"Order #": ["BO-1"], "Order ID": ["X"], "Amt": ["5"]})
    mapped = map_columns(frame, ["backd_order_id", "refund_amount"], column_map="Order #=backd_order_id, amt=refund_amount")
    assert mapped.frame.to_dict("list") == {"backd_order_id": ["BO-1"], "refund_amount": ["5"]}
    assert {m.how for m in mapped.matches} == {"column_map"}
    with pytest.raises(InputError, match="the input has no header 'Order No'; its headers are 'Order #', 'Order ID', 'Amt'"):
        map_columns(frame, ["backd_order_id"], column_map={"Order No": "backd_order_id"})
    with pytest.raises(InputError, match="'total' is not a column refund takes"):
        map_columns(frame, ["backd_order_id"], ["refund_amount"], column_map={"Amt": "total"}, what="refund")
    with pytest.raises(InputError, match="wrong way round; write it as 'Amt'='refund_amount'"):
        map_columns(frame, ["backd_order_id", "refund_amount"], column_map={"refund_amount": "Amt"})


def test_two_headers_for_one_column_is_an_error_naming_both():
    frame = pd.DataFrame({"Order ID": ["BO-1"], "Backd Order": ["BO-2"]})
    with pytest.raises(InputError, match="the headers 'Order ID' and 'Backd Order' both match it"):
        map_columns(frame, ["backd_order_id"])
    exact = pd.DataFrame({"backd_order_id": ["BO-1"], "Order ID": ["BO-2"]})  # our own name beats a synonym
    assert map_columns(exact, ["backd_order_id"]).frame["backd_order_id"].tolist() == ["BO-1"]


def test_a_missing_column_says_what_there_is_what_is_needed_and_how_to_map(monkeypatch):
    frame = pd.DataFrame({"backd_order_id;merchant_order_id;refund_amount": ["BO-1;M-1;5"]})
    with pytest.raises(InputError) as info:
        map_columns(frame, ["backd_order_id", "refund_amount"], ["merchant_order_id"], what="refund")
    text = str(info.value)
    assert "refund: missing column backd_order_id, refund_amount; the input has 1 column:" in text
    assert "semicolon-separated" in text and "column_map={" in text
    set_option_style("cli")
    try:
        with pytest.raises(InputError, match="--column-map 'Their name=our_name'"):
            map_columns(frame, ["backd_order_id"])
    finally:
        set_option_style("python")


@pytest.mark.parametrize(("text", "expected"), [
    ('{"Order #": "backd_order_id"}', {"Order #": "backd_order_id"}),
    ("{'Order #': 'backd_order_id'}", {"Order #": "backd_order_id"}),
    ("Order #=backd_order_id,Amount=refund_amount", {"Order #": "backd_order_id", "Amount": "refund_amount"}),
    ("a=b=c", {"a=b": "c"}),
    ("", {}),
    (None, {}),
])
def test_parse_mapping_accepts_json_python_and_pairs(text, expected):
    assert parse_mapping(text) == expected


@pytest.mark.parametrize("text", ["{'Order #': }", "Order #", "[1, 2]", '{"a": 1}'])
def test_parse_mapping_refuses_with_words(text):
    with pytest.raises(InputError, match="column_map"):
        parse_mapping(text)


def test_no_synonym_means_two_columns_of_one_operation_or_of_the_ledger():
    for columns in [*(op.columns for op in OPERATIONS.values()), (*REQUIRED, *OPTIONAL)]:
        keys = [key for c in columns for key in {header_key(h) for h in (c, *SYNONYMS.get(c, ()))}]
        assert len(keys) == len(set(keys)), columns
