"""Arc conditions: the `when` expressions over a step's `output` and `input`.

A condition comes from a workflow document, that is from a user, so it is never
given to `eval`: Python's parser reads it (`ast.parse`) and a whitelist of node
types turns it into plain closures. Anything else (calls, arithmetic, `_` names,
lambdas, comprehensions) is refused when the workflow is loaded, and `holds` is
total: a missing key is null, and a comparison JSON cannot make is false.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeGuard

from petriflow.engine.errors import Invalid

Eval = Callable[[dict[str, Any], dict[str, Any]], Any]
MAX_DEPTH = 100  # of AST nodes: deeper than any real condition, far from the recursion limit
LITERAL_NAMES = {"true": True, "false": False, "null": None}
ORDER = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
REFUSED = {
    ast.Call: "function calls are",
    ast.BinOp: "arithmetic is",
    ast.Lambda: "lambdas are",
    ast.NamedExpr: "assignments (:=) are",
    ast.JoinedStr: "f-strings are",
    ast.IfExp: "conditional expressions are",
    ast.ListComp: "comprehensions are",
    ast.SetComp: "comprehensions are",
    ast.DictComp: "comprehensions are",
    ast.GeneratorExp: "comprehensions are",
    ast.UnaryOp: "arithmetic is",
    ast.Tuple: "tuples are",
    ast.Dict: "object literals are",
    ast.Set: "sets are",
}


class ConditionSyntaxError(Invalid):
    """A `when` expression that is not a valid condition; the message says where."""

    code = "invalid_condition"


@dataclass(frozen=True)
class Condition:
    """A checked condition; constructing one parses `text` (or raises)."""

    text: str
    _eval: Eval = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ConditionSyntaxError(f"a condition must be a string, not {type(self.text).__name__}")
        object.__setattr__(self, "_eval", _compile(self.text))

    def holds(self, output: dict[str, Any], input: dict[str, Any]) -> bool:
        """Whether the condition is true (JSON truthiness) for a step; never raises."""
        return bool(self._eval(output, input))


def parse_condition(text: str) -> Condition:
    """The condition `text` means; raises ConditionSyntaxError saying what is wrong."""
    return Condition(text)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: 1 == 1.0, but a boolean equals only a boolean."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _number(a) and _number(b):
        return bool(a == b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    return type(a) is type(b) and bool(a == b)


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ordered(op: Callable[[Any, Any], bool], a: Any, b: Any) -> bool:
    """`<` and the like only between two numbers or two strings; else false."""
    return bool((_number(a) and _number(b) or isinstance(a, str) and isinstance(b, str)) and op(a, b))


def _member(a: Any, b: Any) -> bool:
    """`a in b`: an element of a list, a substring of a string, a key of an object."""
    if isinstance(b, list | tuple):
        return any(json_equal(a, x) for x in b)
    return isinstance(b, str | dict) and isinstance(a, str) and a in b


def _get(value: Any, key: str | int) -> Any:
    if isinstance(value, dict):
        return value.get(key)
    if isinstance(value, list | tuple) and isinstance(key, int) and key < len(value):
        return value[key]
    return None


COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: json_equal,
    ast.NotEq: lambda a, b: not json_equal(a, b),
    ast.In: _member,
    ast.NotIn: lambda a, b: not _member(a, b),
    **{op: functools.partial(_ordered, fn) for op, fn in ORDER.items()},
}


@functools.lru_cache(maxsize=4096)
def _compile(text: str) -> Eval:
    """The closure tree of a condition, made once per text."""
    body = text.lstrip()  # a leading blank is no "unexpected indent"
    shift = len(text) - len(body)
    if not body.strip():
        raise ConditionSyntaxError("the condition is empty")
    try:
        tree = ast.parse(body, mode="eval")
    except SyntaxError as exc:
        where = f" at line {exc.lineno}, column {exc.offset}" if exc.lineno and exc.lineno > 1 else ""
        if exc.lineno == 1:
            where = f" at column {exc.offset + shift}" if exc.offset else " at the end"
        detail = "" if exc.msg.startswith("invalid syntax") else f" ({exc.msg})"
        raise ConditionSyntaxError(f"syntax error{where}{detail}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ConditionSyntaxError(f"syntax error ({exc})") from None
    # A bounded depth: neither the walk below nor `holds` can exhaust the stack.
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConditionSyntaxError("the condition is nested too deeply")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return _Compiler(body.splitlines(), shift).expr(tree.body)


class _Compiler:
    """The whitelist walk: each allowed node becomes a closure over (output, input)."""

    def __init__(self, lines: list[str], shift: int) -> None:
        self.lines, self.shift = lines, shift

    def fail(self, what: str, node: ast.expr, attr: str = "") -> NoReturn:
        """Raise, naming the column (1-based, in characters) where `node` (or its `.attr`) begins."""
        line, offset = node.lineno, node.col_offset
        if attr:  # ast offsets count UTF-8 bytes
            line, offset = node.end_lineno or line, (node.end_col_offset or 0) - len(attr.encode())
        text = self.lines[line - 1] if line <= len(self.lines) else ""
        column = len(text.encode()[:offset].decode(errors="ignore")) + 1
        where = f"column {column + self.shift}" if line == 1 else f"line {line}, column {column}"
        raise ConditionSyntaxError(f"{what} at {where}")

    def expr(self, node: ast.expr) -> Eval:
        if isinstance(node, ast.BoolOp):
            parts = [self.expr(value) for value in node.values]
            if isinstance(node.op, ast.And):
                return lambda o, i: all(part(o, i) for part in parts)
            return lambda o, i: any(part(o, i) for part in parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            operand = self.expr(node.operand)
            return lambda o, i: not operand(o, i)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Name | ast.Attribute | ast.Subscript):
            return self.path(node)
        if isinstance(node, ast.List):
            items = [self.expr(item) for item in node.elts]
            return lambda o, i: [item(o, i) for item in items]
        value = self.literal(node)
        return lambda o, i: value

    def literal(self, node: ast.expr) -> Any:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            if isinstance(node.operand, ast.Constant) and _number(node.operand.value):
                return -node.operand.value
            self.fail("unary minus is only allowed on a number", node)
        if isinstance(node, ast.Constant):
            if node.value is None or isinstance(node.value, str | int | float):
                return node.value
            self.fail(f"the literal {node.value!r} is not allowed", node)
        what = next((what for cls, what in REFUSED.items() if isinstance(node, cls)), None)
        self.fail(f"{what or type(node).__name__ + ' expressions are'} not allowed", node)

    def compare(self, node: ast.Compare) -> Eval:
        operands = [self.expr(operand) for operand in [node.left, *node.comparators]]
        if any(type(op) not in COMPARE for op in node.ops):
            self.fail("'is' is not allowed (use == or !=)", node)
        tests = [COMPARE[type(op)] for op in node.ops]

        def run(o: dict[str, Any], i: dict[str, Any]) -> bool:  # chained: a < b < c is a < b and b < c
            left = operands[0](o, i)
            for test, operand in zip(tests, operands[1:]):
                right = operand(o, i)
                if not test(left, right):
                    return False
                left = right
            return True

        return run

    def path(self, node: ast.expr) -> Eval:
        """`output.a['b c'][0]`: keys looked up in data, never Python attributes."""
        keys: list[str | int] = []
        while not isinstance(node, ast.Name):
            if isinstance(node, ast.Attribute):
                if node.attr.startswith("_"):
                    self.fail(f"the name {node.attr!r} is not allowed (names may not start with '_')", node, node.attr)
                keys.append(node.attr)
            elif isinstance(node, ast.Subscript):
                key = getattr(node.slice, "value", None)
                if not isinstance(node.slice, ast.Constant) or not (type(key) is str or type(key) is int and key >= 0):
                    self.fail("a subscript must be a string or a non-negative integer", node.slice)
                keys.append(key)
            else:
                self.fail("only output and input have fields", node)
            node = node.value
        if node.id in LITERAL_NAMES and not keys:
            value = LITERAL_NAMES[node.id]
            return lambda o, i: value
        if node.id not in ("output", "input"):
            hint = "only output and input have fields" if node.id in LITERAL_NAMES else "use output or input"
            self.fail(f"unknown name {node.id!r} ({hint})", node)
        path, from_output = tuple(reversed(keys)), node.id == "output"

        def run(o: dict[str, Any], i: dict[str, Any]) -> Any:
            value: Any = o if from_output else i
            for key in path:
                value = _get(value, key)
            return value

        return run
