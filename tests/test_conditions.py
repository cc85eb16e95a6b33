"""Arc conditions: what each operator means over JSON values, that `holds` is
total, and that everything outside the small grammar is refused at parse time
with a message that names the problem and its column."""

from __future__ import annotations

from typing import Any

import pytest

from petriflow.engine import conditions
from petriflow.engine.conditions import Condition, ConditionSyntaxError, parse_condition
from petriflow.engine.errors import Invalid, PetriflowError, error_for

pytestmark = pytest.mark.timeout(30)

OUTPUT: dict[str, Any] = {
    "amount": 1500,
    "price": 9.5,
    "status": "ok",
    "approved": True,
    "rejected": False,
    "nothing": None,
    "zero": 0,
    "empty": "",
    "tags": ["red", "green", 3, True],
    "no_tags": [],
    "meta": {"owner": {"name": "ann", "level": 2}, "key with space": "yes", "__class__": "data"},
    "no_meta": {},
    "rows": [{"id": 7}, {"id": 8}],
}
INPUT: dict[str, Any] = {"dry_run": False, "limit": 1000, "user": "ann", "roles": {"admin": True}}


def holds(text: str, output: dict[str, Any] = OUTPUT, input: dict[str, Any] = INPUT) -> bool:
    return parse_condition(text).holds(output, input)


# --- the examples and every operator ---------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("output.amount > 1000", True),
        ("output.amount > 2000", False),
        ("output.status == 'ok' and not input.dry_run", True),
        ("output.status == 'ok' and not output.approved", False),
        ("output.approved", True),
        ("output.rejected", False),
        ("output.amount == 1500", True),
        ("output.amount != 1500", False),
        ("output.status != 'ko'", True),
        ("output.amount < 1500", False),
        ("output.amount <= 1500", True),
        ("output.amount >= 1500", True),
        ("output.amount >= 1501", False),
        ("output.price < 10", True),
        ("output.status < 'pk'", True),  # strings order as strings
        ("output.amount > input.limit", True),
        ("output.rejected or output.approved", True),
        ("output.rejected or output.zero", False),
        ("output.approved and output.zero", False),
        ("not output.rejected", True),
        ('output.status == "ok"', True),  # double quotes too
        ("output.price == 9.5", True),
        ("output.amount > -1", True),
        ("-2 < -1", True),
        ("output.zero > -0.5", True),
    ],
)
def test_operators(text: str, expected: bool) -> None:
    assert holds(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000 < output.amount < 2000", True),
        ("1000 < output.amount < 1200", False),
        ("2000 < output.amount < 3000", False),
        ("0 <= output.zero == 0 < 1", True),
        ("1 < 2 > 3", False),  # each link must hold, not just the last
    ],
)
def test_chained_comparisons(text: str, expected: bool) -> None:
    assert holds(text) is expected


def test_chained_comparison_reads_each_operand_once() -> None:
    """a < b < c is a < b and b < c: the middle one compares both ways."""
    assert holds("1 < output.x < 3", {"x": 2}, {})
    assert not holds("1 < output.x < 3", {"x": 3}, {})
    assert not holds("1 < output.x < 3", {"x": 1}, {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("True", True),
        ("false", False),
        ("False", False),
        ("null", False),
        ("None", False),
        ("output.approved == true", True),
        ("output.approved == True", True),
        ("output.rejected == false", True),
        ("output.nothing == null", True),
        ("output.nothing == None", True),
        ("output.missing == null", True),
        ("output.zero == null", False),
        ("output.rejected == null", False),
    ],
)
def test_literal_names(text: str, expected: bool) -> None:
    assert holds(text) is expected


# --- JSON truthiness, and `and`/`or` give booleans ---------------------------


@pytest.mark.parametrize("name", ["nothing", "rejected", "zero", "empty", "no_tags", "no_meta", "missing"])
def test_falsy_values(name: str) -> None:
    assert holds(f"output.{name}") is False
    assert holds(f"not output.{name}") is True


@pytest.mark.parametrize("name", ["amount", "price", "status", "approved", "tags", "meta"])
def test_truthy_values(name: str) -> None:
    assert holds(f"output.{name}") is True
    assert holds(f"not output.{name}") is False


def test_holds_returns_a_bool() -> None:
    for text in ["output.amount", "output.status or output.amount", "output.tags and output.meta", "output.zero"]:
        assert type(holds(text)) is bool, text


def test_and_or_short_circuit_to_booleans() -> None:
    """`and`/`or` give booleans, not the operand Python's `or` would return."""
    evaluate = conditions._compile("output.status or output.amount")
    assert evaluate(OUTPUT, INPUT) is True
    assert conditions._compile("output.zero and output.status")(OUTPUT, INPUT) is False
    assert conditions._compile("output.zero or output.empty")(OUTPUT, INPUT) is False


# --- paths: dotted, subscripts, missing keys ----------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("output.meta.owner.name == 'ann'", True),
        ("output.meta.owner.level == 2", True),
        ("output.meta.owner.name == input.user", True),
        ("output['meta']['owner']['name'] == 'ann'", True),
        ("output.meta['key with space'] == 'yes'", True),
        ('output["meta"]["key with space"] == "yes"', True),
        ("output.rows[1].id == 8", True),
        ("output.rows[0]['id'] == 7", True),
        ("output.tags[0] == 'red'", True),
        ("output.tags[4] == null", True),  # past the end
        ("input.roles.admin", True),
    ],
)
def test_paths(text: str, expected: bool) -> None:
    assert holds(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "output.missing",
        "output.missing.deeper.still",
        "output.amount.digits",  # into a number
        "output.status.upper",  # into a string: no Python attribute
        "output.tags.count",  # into a list: no Python attribute
        "output.nothing.x",  # into null
        "output.meta[0]",  # an index into an object
        "output.status[0]",  # an index into a string
        "output.rows['id']",  # a key into a list
    ],
)
def test_missing_or_impossible_paths_are_null(text: str) -> None:
    assert holds(f"{text} == null")
    assert not holds(text)


def test_a_subscript_key_is_data_never_a_python_attribute() -> None:
    """`['__class__']` reads a key of the object; it is not getattr."""
    assert holds("output.meta['__class__'] == 'data'")
    assert holds("output.no_meta['__class__'] == null")
    assert holds("output.status['__class__'] == null")


def test_output_and_input_are_separate() -> None:
    assert holds("output.user == null and input.user == 'ann'")
    assert holds("input.amount == null")


def test_non_dict_roots_do_not_raise() -> None:
    condition = parse_condition("output.a.b == 1 or input[0] > 2")
    assert condition.holds({}, {}) is False
    assert condition.holds({"a": []}, {"x": None}) is False


# --- comparisons across types -----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "output.nothing > 1",
        "output.nothing < 1",
        "output.missing >= 0",
        "output.missing <= 0",
        "'a' < 1",
        "1 > 'a'",
        "output.tags > 1",
        "output.meta < output.meta",
        "[1] < [2]",  # lists do not order
        "output.approved > 0",  # booleans are not numbers
        "false < true",
        "output.status > null",
    ],
)
def test_comparisons_json_cannot_make_are_false(text: str) -> None:
    assert holds(text) is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 == 1.0", True),
        ("output.amount == 1500.0", True),
        ("true == 1", False),
        ("True == 1", False),
        ("false == 0", False),
        ("output.approved == 1", False),
        ("output.approved != 1", True),
        ("output.zero == false", False),
        ("output.zero != false", True),
        ("1 == '1'", False),
        ("null == 0", False),
        ("null == false", False),
        ("'' == null", False),
        ("output.tags == ['red', 'green', 3, true]", True),
        ("output.tags == ['red', 'green', 3, 1]", False),  # a nested boolean is no number either
        ("output.tags == ['red', 'green', 3.0, true]", True),
        ("output.tags == ['red', 'green', 3]", False),
        ("output.meta.owner == output.meta['owner']", True),
        ("output.rows[0] == output.rows[1]", False),
        ("output.no_tags == []", True),
    ],
)
def test_equality_is_json_equality(text: str, expected: bool) -> None:
    assert holds(text) is expected


def test_nested_objects_compare_as_json() -> None:
    assert holds("output.a == output.b", {"a": {"x": [1, {"y": True}]}, "b": {"x": [1.0, {"y": True}]}}, {})
    assert not holds("output.a == output.b", {"a": {"x": [1, {"y": True}]}, "b": {"x": [1, {"y": 1}]}}, {})
    assert not holds("output.a == output.b", {"a": {"x": 1}, "b": {"x": 1, "z": 2}}, {})


# --- membership --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("output.status in ['ok', 'done']", True),
        ("output.status in ['ko', 'done']", False),
        ("output.status not in ['ko', 'done']", True),
        ("output.status not in ['ok']", False),
        ("'red' in output.tags", True),
        ("'blue' in output.tags", False),
        ("3 in output.tags", True),
        ("3.0 in output.tags", True),
        ("1 in output.tags", False),  # true is in it, but true is no number
        ("true in output.tags", True),
        ("'ok' in 'look'", True),  # substring
        ("output.status in 'okay'", True),
        ("'z' in output.status", False),
        ("'owner' in output.meta", True),  # an object's keys
        ("'ann' in output.meta", False),  # not its values
        ("'key with space' in output.meta", True),
        ("'admin' in input.roles", True),
        ("'admin' not in input.roles", False),
        ("input.user in [input.user, 'bob']", True),  # list elements may be paths
        ("[1, 2] in [[1, 2], [3]]", True),
        ("output.missing in [null]", True),
        ("1 in [true]", False),
    ],
)
def test_membership(text: str, expected: bool) -> None:
    assert holds(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "'a' in output.amount",  # a number
        "'a' in output.missing",  # null
        "'a' in output.approved",  # a boolean
        "1 in output.status",  # a non-string in a string
        "['o'] in output.status",
        "1 in output.meta",  # object keys are strings
        "output.tags in output.meta",  # an unhashable value as a key
        "output.meta in output.meta",
    ],
)
def test_in_without_a_fitting_container_is_false(text: str) -> None:
    assert holds(text) is False


def test_not_in_is_the_negation_of_in() -> None:
    """`a not in b` is `not (a in b)`, which Python also reads `not a in b` as."""
    for right in ["output.amount", "output.missing", "output.tags", "output.meta", "output.status"]:
        for left in ["'red'", "'owner'", "'o'", "1", "null"]:
            assert holds(f"{left} not in {right}") is not holds(f"{left} in {right}")
            assert holds(f"{left} not in {right}") is holds(f"not {left} in {right}")


# --- parsing once, API --------------------------------------------------------


def test_parse_is_cached_and_condition_is_a_value() -> None:
    first, second = parse_condition("output.amount > 1000"), parse_condition("output.amount > 1000")
    assert first == second and hash(first) == hash(second)
    assert first.text == "output.amount > 1000"
    assert repr(first) == "Condition(text='output.amount > 1000')"
    assert conditions._compile("output.amount > 1000") is conditions._compile("output.amount > 1000")
    before = conditions._compile.cache_info().hits
    parse_condition("output.amount > 1000").holds(OUTPUT, INPUT)
    assert conditions._compile.cache_info().hits == before + 1


def test_constructing_a_condition_checks_it() -> None:
    with pytest.raises(ConditionSyntaxError, match="function calls"):
        Condition("output.x()")


def test_error_carries_a_stable_code() -> None:
    with pytest.raises(ConditionSyntaxError) as caught:
        parse_condition("outptu.amount > 1")
    assert isinstance(caught.value, Invalid) and isinstance(caught.value, PetriflowError)
    assert caught.value.code == "invalid_condition"
    rebuilt = error_for("invalid_condition", caught.value.message)
    assert type(rebuilt) is ConditionSyntaxError and str(rebuilt) == str(caught.value)


def test_leading_and_trailing_blanks_are_fine() -> None:
    assert holds("  output.amount > 1000  ")
    assert holds("(output.amount >\n 1000)")
    with pytest.raises(ConditionSyntaxError, match="at column 4$"):
        parse_condition("   outptu")


# --- refusals ----------------------------------------------------------------


def refused(text: str) -> str:
    with pytest.raises(ConditionSyntaxError) as caught:
        parse_condition(text)
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("outptu.amount > 1", "unknown name 'outptu' (use output or input) at column 1"),
        ("output.a == inptu.b", "unknown name 'inptu' (use output or input) at column 13"),
        ("amount > 1", "unknown name 'amount' (use output or input) at column 1"),
        ("os", "unknown name 'os' (use output or input) at column 1"),
        ("true.x", "unknown name 'true' (only output and input have fields) at column 1"),
    ],
)
def test_unknown_names(text: str, message: str) -> None:
    assert refused(text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("output.amount >", "syntax error at the end"),
        ("output.amount > > 1", "syntax error at column 17"),
        ("output.x = 1", "syntax error at column 10"),
        ("output.x == 'ok", "syntax error at column 13 (unterminated string literal"),
        ("(output.x == 1", "syntax error at column 1 ('(' was never closed)"),
        ("output.x ! 1", "syntax error at column 10"),
        ("output.x === 1", "syntax error at column 12"),
        ("output.x && output.y", "syntax error at column 11"),
        ("output.class == 1", "syntax error at column 8"),  # a Python keyword: use output['class']
        ("", "the condition is empty"),
        ("   ", "the condition is empty"),
    ],
)
def test_syntax_errors_name_the_column(text: str, message: str) -> None:
    assert refused(text).startswith(message)


def test_columns_count_characters_not_bytes() -> None:
    assert refused("output.é == 'ü' and output.x()") == "function calls are not allowed at column 21"
    assert (
        refused("'é' == output.__dict__")
        == "the name '__dict__' is not allowed (names may not start with '_') at column 15"
    )


def test_a_later_line_is_named() -> None:
    assert refused("(output.x ==\n output.y())") == "function calls are not allowed at line 2, column 2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("output.x()", "function calls are not allowed at column 1"),
        ("__import__('os')", "function calls are not allowed at column 1"),
        ("__import__('os').system('true')", "function calls are not allowed at column 1"),
        ("output.status == str(1)", "function calls are not allowed at column 18"),
        ("len(output.tags) > 1", "function calls are not allowed at column 1"),
    ],
)
def test_calls_are_refused(text: str, message: str) -> None:
    assert refused(text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("output.__class__", "the name '__class__' is not allowed (names may not start with '_') at column 8"),
        ("output.a.__class__.__mro__", "the name '__mro__' is not allowed (names may not start with '_') at column 20"),
        ("output._private == 1", "the name '_private' is not allowed (names may not start with '_') at column 8"),
        ("input.__dict__", "the name '__dict__' is not allowed (names may not start with '_') at column 7"),
    ],
)
def test_underscore_names_are_refused(text: str, message: str) -> None:
    assert refused(text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("output.amount + 1 > 2", "arithmetic is not allowed at column 1"),
        ("output.amount * 2", "arithmetic is not allowed at column 1"),
        ("output.amount / 2 > 1", "arithmetic is not allowed at column 1"),
        ("output.a > 1 - 2", "arithmetic is not allowed at column 12"),
        ("'a' + 'b' == output.s", "arithmetic is not allowed at column 1"),
        ("~output.x", "arithmetic is not allowed at column 1"),
        ("+1 == 1", "arithmetic is not allowed at column 1"),
        ("-output.amount < 0", "unary minus is only allowed on a number at column 1"),
        ("--1 == 1", "unary minus is only allowed on a number at column 1"),
        ("-'a' == 1", "unary minus is only allowed on a number at column 1"),
    ],
)
def test_arithmetic_is_refused(text: str, message: str) -> None:
    assert refused(text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lambda: 1", "lambdas are not allowed at column 1"),
        ("(lambda x: x)(output)", "function calls are not allowed at column 1"),
        ("[x for x in output.tags]", "comprehensions are not allowed at column 1"),
        ("'red' in [x for x in output.tags]", "comprehensions are not allowed at column 10"),
        ("{x for x in output.tags}", "comprehensions are not allowed at column 1"),
        ("{x: 1 for x in output.tags}", "comprehensions are not allowed at column 1"),
        ("any(x for x in output.tags)", "function calls are not allowed at column 1"),
        ("(x for x in output.tags)", "comprehensions are not allowed at column 1"),
        ("(y := output.amount) > 1", "assignments (:=) are not allowed at column 2"),
        ("f'{output.amount}' == '1500'", "f-strings are not allowed at column 1"),
        ("output.status == f'ok'", "f-strings are not allowed at column 18"),
        ("1 if output.x else 2", "conditional expressions are not allowed at column 1"),
        ("output.x is None", "'is' is not allowed (use == or !=) at column 1"),
        ("output.x is not None", "'is' is not allowed (use == or !=) at column 1"),
        ("output.x in (1, 2)", "tuples are not allowed at column 13"),
        ("output.x == {'a': 1}", "object literals are not allowed at column 13"),
        ("output.x in {1, 2}", "sets are not allowed at column 13"),
        ("output.x[1:2] == 1", "a subscript must be a string or a non-negative integer at column 10"),
        ("output.x[-1] == 1", "a subscript must be a string or a non-negative integer at column 10"),
        ("output.x[input.k] == 1", "a subscript must be a string or a non-negative integer at column 10"),
        ("output.x[true] == 1", "a subscript must be a string or a non-negative integer at column 10"),
        ("'abc'[0] == 'a'", "only output and input have fields at column 1"),
        ("[1, 2][0] == 1", "only output and input have fields at column 1"),
        ("b'x' == output.x", "the literal b'x' is not allowed at column 1"),
        ("output.x == 1j", "the literal 1j is not allowed at column 13"),
        ("output.x == ...", "the literal Ellipsis is not allowed at column 13"),
        ("[*output.tags] == []", "Starred expressions are not allowed at column 2"),
        ("(yield)", "Yield expressions are not allowed at column 2"),
        ("await output", "Await expressions are not allowed at column 1"),
    ],
)
def test_other_constructs_are_refused(text: str, message: str) -> None:
    assert refused(text) == message


def test_a_refused_part_anywhere_is_found() -> None:
    """The whole tree is checked at parse time, also branches `holds` might never reach."""
    assert refused("true or output.x()") == "function calls are not allowed at column 9"
    assert refused("false and output.__class__") == (
        "the name '__class__' is not allowed (names may not start with '_') at column 18"
    )
    assert refused("output.a in [1, output.b + 1]") == "arithmetic is not allowed at column 17"


def test_deep_nesting_is_refused_not_a_crash() -> None:
    assert refused("not " * 200 + "output.x") == "the condition is nested too deeply"
    assert refused("(" * 300 + "1" + ")" * 300).startswith("syntax error")
    assert holds("not " * 20 + "output.approved")  # an even count of nots


def test_non_strings_and_null_bytes_are_refused() -> None:
    assert refused(123) == "a condition must be a string, not int"  # type: ignore[arg-type]
    assert refused("output.x\x00").startswith("syntax error")


def test_holds_is_total_over_json_values() -> None:
    """Every operator over every kind of JSON value gives a bool and never raises."""
    values = ["null", "true", "false", "0", "1", "-2.5", "''", "'ab'", "[]", "[1, 'a', null]", "output.o", "output.l"]
    data = {"o": {"a": 1, "b": [True]}, "l": [{"a": 1}, [2], "x"]}
    operators = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "and", "or"]
    for left in values:
        for op in operators:
            for right in values:
                result = parse_condition(f"{left} {op} {right}").holds(data, {})
                assert type(result) is bool, f"{left} {op} {right}"
