"""Award formulas: a tokenizer and recursive-descent parser for the grammar of docs/program.md,
and an evaluator over exact decimals. Nothing else is accepted: no names, no attribute
access, no calls beyond ``min max floor ceil round abs``.

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/") unary)*
    unary   := "-" unary | primary
    primary := NUMBER | "{{" PATH "}}" | FUNC "(" expr ("," expr)* ")" | "(" expr ")"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from perkamo.program.bounds import CONTEXT_LIMIT
from perkamo.program.paths import MISSING, lookup

MAX_LENGTH = 500
_FUNCTIONS: dict[str, tuple[int, int | None]] = {  # name -> (min args, max args)
    "min": (1, None),
    "max": (1, None),
    "floor": (1, 1),
    "ceil": (1, 1),
    "round": (1, 1),
    "abs": (1, 1),
}
_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<placeholder>\{\{\s*(?P<path>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\})
  | (?P<name>[a-z]+)
  | (?P<op>[-+*/(),])
    """,
    re.VERBOSE,
)


class FormulaError(ValueError):
    """A formula that does not parse; ``position`` is the 0-based character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


class FormulaInputError(ValueError):
    """At evaluation: a missing or non-numeric input, or a division by zero."""


# -- the tree -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Number:
    value: Decimal


@dataclass(frozen=True, slots=True)
class Placeholder:
    path: str  # "context.amount", "traits.tier"


@dataclass(frozen=True, slots=True)
class Negate:
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]


Node = Number | Placeholder | Negate | Binary | Call


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    position: int


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(source):
        m = _TOKEN.match(source, position)
        if m is None:
            raise FormulaError(f"unexpected character {source[position]!r}", position)
        kind = m.lastgroup
        assert kind is not None
        if kind == "path":
            kind = "placeholder"
        if kind != "space":
            text = m.group("path") if kind == "placeholder" else m.group(0)
            tokens.append(_Token(kind, text, position))
        position = m.end()
    tokens.append(_Token("end", "", len(source)))
    return tokens


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.index = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text or token.kind not in ("op",):
            found = repr(token.text) if token.text else "the end"
            raise FormulaError(f"expected {text!r}, found {found}", token.position)

    def parse(self) -> Node:
        node = self.expr()
        token = self.peek()
        if token.kind != "end":
            raise FormulaError(f"unexpected {token.text!r}", token.position)
        return node

    def expr(self) -> Node:
        node = self.term()
        while self.peek().text in ("+", "-") and self.peek().kind == "op":
            op = self.take().text
            node = Binary(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek().text in ("*", "/") and self.peek().kind == "op":
            op = self.take().text
            node = Binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek().kind == "op" and self.peek().text == "-":
            self.take()
            return Negate(self.unary())
        return self.primary()

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "number":
            return Number(Decimal(token.text))
        if token.kind == "placeholder":
            path = token.text
            if not path.startswith(("context.", "traits.")):
                path = "context." + path
            return Placeholder(path)
        if token.kind == "name":
            if token.text not in _FUNCTIONS:
                raise FormulaError(f"unknown function {token.text!r}", token.position)
            self.expect("(")
            args = [self.expr()]
            while self.peek().kind == "op" and self.peek().text == ",":
                self.take()
                args.append(self.expr())
            self.expect(")")
            low, high = _FUNCTIONS[token.text]
            if len(args) < low or (high is not None and len(args) > high):
                raise FormulaError(
                    f"{token.text}() takes {low if high == low else f'{low} or more'} "
                    f"argument{'s' if (high or 2) > 1 else ''}",
                    token.position,
                )
            return Call(token.text, tuple(args))
        if token.kind == "op" and token.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        found = repr(token.text) if token.text else "the end"
        raise FormulaError(
            f"expected a number, placeholder or function, found {found}", token.position
        )


def parse(source: str) -> Node:
    """Parse a formula. Raises FormulaError (with position) for anything outside the grammar."""
    if len(source) > MAX_LENGTH:
        raise FormulaError(f"formula longer than {MAX_LENGTH} characters", MAX_LENGTH)
    if not source.strip():
        raise FormulaError("empty formula", 0)
    return _Parser(source).parse()


def placeholders(node: Node) -> list[str]:
    if isinstance(node, Placeholder):
        return [node.path]
    if isinstance(node, Negate):
        return placeholders(node.operand)
    if isinstance(node, Binary):
        return placeholders(node.left) + placeholders(node.right)
    if isinstance(node, Call):
        return [p for arg in node.args for p in placeholders(arg)]
    return []


def _round_half_away(value: Decimal) -> Decimal:
    return value.quantize(Decimal(1), rounding=ROUND_HALF_UP)


_CALLS: dict[str, Callable[[list[Decimal]], Decimal]] = {
    "min": min,
    "max": max,
    "floor": lambda a: a[0].quantize(Decimal(1), rounding=ROUND_FLOOR),
    "ceil": lambda a: a[0].quantize(Decimal(1), rounding=ROUND_CEILING),
    "round": lambda a: _round_half_away(a[0]),
    "abs": lambda a: abs(a[0]),
}


def evaluate(node: Node, scope: Mapping[str, object]) -> Decimal:
    """Evaluate with exact decimals; ``scope`` maps ``context``/``traits`` to objects.

    Raises FormulaInputError for a missing or non-numeric input, a division by zero, or an
    input or intermediate result outside the 34-digit decimal context (docs/program.md "Bounds").
    """
    return _evaluate(node, scope)


def _checked(value: Decimal) -> Decimal:
    if not -CONTEXT_LIMIT < value < CONTEXT_LIMIT:
        raise FormulaInputError("a value left the decimal context")
    return value


def _evaluate(node: Node, scope: Mapping[str, object]) -> Decimal:
    if isinstance(node, Number):
        return _checked(node.value)
    if isinstance(node, Placeholder):
        value = lookup(scope, node.path)
        if value is MISSING or isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise FormulaInputError(f"{node.path} is missing or not a number")
        return _checked(Decimal(value))
    if isinstance(node, Negate):
        return -_evaluate(node.operand, scope)
    if isinstance(node, Binary):
        left, right = _evaluate(node.left, scope), _evaluate(node.right, scope)
        try:
            if node.op == "+":
                return _checked(left + right)
            if node.op == "-":
                return _checked(left - right)
            if node.op == "*":
                return _checked(left * right)
            if right == 0:
                raise FormulaInputError("division by zero")
            return _checked(left / right)
        except ArithmeticError as exc:
            raise FormulaInputError("arithmetic outside the decimal context") from exc
    return _CALLS[node.name]([_evaluate(arg, scope) for arg in node.args])
