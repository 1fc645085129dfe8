"""Search runs with a small filter language, compiled to one SQL WHERE clause.

>>> search_runs("metrics.auc > 0.9 and (params.model = 'rf' or params.model = 'gbm')")

The grammar is MLflow's with `or`, `not` and parentheses added (keywords in any case):

    query      := or_expr? END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | comparison
    comparison := field ("=" | "!=" | "<" | "<=" | ">" | ">=") value
                | field ("like" | "ilike") STRING
                | field "in" "(" value ("," value)* ")"
    field      := ("metrics" | "params" | "tags") "." (NAME | `ANY NAME`)
                | ["attributes."] ("status" | "name" | "pipeline" | "user" | "kind" | "started_at")
    value      := NUMBER | 'STRING' | "STRING"          (a quote is doubled inside: 'it''s')

What a comparison means:

- `metrics.X` compares the last value of the series (highest step, then latest logged). A NaN
  last value is unequal to everything and neither smaller nor greater, as in IEEE arithmetic.
- `params.X` holds JSON: a number compares with numeric params only (3 matches 3 and 3.0, and
  "abc" is never a number), a string with string params only.
- `like` is case-sensitive and `ilike` is not, on both backends; `%` and `_` are the wildcards
  and `\\` escapes them.
- `started_at` compares with an ISO date or date/time; one without a zone is taken as UTC.
- A comparison holds only for runs that have the field: `pipeline != 'x'` skips runs without a
  pipeline, and `not` is the exact complement, so `not pipeline = 'x'` includes them.

Every user-given value reaches the database as a bound parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Float,
    SQLColumnExpression,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Boolean, String

from shipyard.errors import InvalidInput
from shipyard.project import Project, current
from shipyard.store.models import RunMetricRecord, RunParamRecord, RunRecord, RunTagRecord
from shipyard.tracking.runs import STATUSES, RunInfo, load_runs

ATTRIBUTES = ("status", "name", "pipeline", "user", "kind", "started_at")
COMPARATORS = ("=", "!=", "<", "<=", ">", ">=")
KEYWORDS = ("and", "or", "not", "in", "like", "ilike")
FIELD_HELP = f"metrics.NAME, params.NAME, tags.NAME or one of {', '.join(ATTRIBUTES)}"
OPERATOR_HELP = f"{', '.join(COMPARATORS)}, like, ilike or in"
# Bounds that keep parsing and the database's own expression depth limits out of reach.
MAX_DEPTH = 30
MAX_COMPARISONS = 200
MAX_VALUES = 1000
# A finite JSON number, the only param text that numeric comparisons look at.
JSON_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"

Value = float | str | datetime
FieldKind = Literal["metric", "param", "tag", "attribute"]


# -- the syntax tree --------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    kind: FieldKind
    name: str
    text: str  # as written, for messages
    position: int


@dataclass(frozen=True)
class Comparison:
    """`field op value`; `op` is a comparator, `like`, `ilike` or `in` (then several values)."""

    field: Field
    op: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Everything:
    """The empty query: every run."""


Node = Comparison | And | Or | Not | Everything


# -- tokens -----------------------------------------------------------------------------------

TokenKind = Literal["word", "field", "string", "number", "op", "(", ")", ",", "end"]


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str  # the source text, quotes included
    value: str  # the meaning: a keyword in lower case, a field name, a string's content
    position: int

    def shown(self) -> str:
        if self.kind == "end":
            return "the end of the query"
        return self.text if self.kind == "string" else f"'{self.text}'"

    def is_keyword(self, *words: str) -> bool:
        return self.kind == "word" and self.value in words


_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z0-9_.]+")  # a field name without backticks
_OPERATOR = re.compile(r"<=|>=|!=|=|<|>")
_PUNCTUATION: dict[str, TokenKind] = {"(": "(", ")": ")", ",": ","}


class _Lexer:
    """Tokens on demand, so that the first error reported is the leftmost one."""

    def __init__(self, text: str) -> None:
        if "\0" in text:  # PostgreSQL text cannot hold it; no name or value has one
            raise InvalidInput(f"the query holds a NUL character at {text.index(chr(0))}")
        self.text = text
        self.at = 0

    def next(self) -> Token:
        space = _SPACE.match(self.text, self.at)
        if space:
            self.at = space.end()
        start = self.at
        if start >= len(self.text):
            return Token("end", "", "", start)
        char = self.text[start]
        if char in _PUNCTUATION:
            self.at += 1
            return Token(_PUNCTUATION[char], char, char, start)
        if char in "'\"":
            return self._string(char)
        operator = _OPERATOR.match(self.text, start)
        if operator:
            return self._simple("op", operator.group())
        number = _NUMBER.match(self.text, start)
        if number:
            return self._simple("number", number.group())
        word = _WORD.match(self.text, start)
        if word:
            return self._word(word.group())
        raise InvalidInput(f"unexpected character {char!r} at {start} in the query")

    def _simple(self, kind: TokenKind, text: str) -> Token:
        start = self.at
        self.at += len(text)
        return Token(kind, text, text, start)

    def _string(self, quote: str) -> Token:
        start, at, parts = self.at, self.at + 1, []
        while True:
            end = self.text.find(quote, at)
            if end < 0:
                raise InvalidInput(
                    f"unterminated string at {start}: close it with {quote} "
                    f"(write {quote}{quote} for a {quote} inside)"
                )
            parts.append(self.text[at:end])
            if self.text.startswith(quote, end + 1):  # a doubled quote stands for itself
                parts.append(quote)
                at = end + 2
                continue
            self.at = end + 1
            return Token("string", self.text[start : self.at], "".join(parts), start)

    def _word(self, word: str) -> Token:
        start = self.at
        self.at += len(word)
        if not self.text.startswith(".", self.at):
            lowered = word.lower()
            return Token("word", word, lowered if lowered in KEYWORDS else word, start)
        self.at += 1
        if self.text.startswith("`", self.at):
            name = self._backticked()
        else:
            found = _NAME.match(self.text, self.at)
            if not found:
                raise InvalidInput(
                    f"expected a name after '{word}.' at {self.at}; put a name with other "
                    f"characters in backticks, e.g. {word}.`val auc`"
                )
            name = found.group()
            self.at = found.end()
        return Token("field", self.text[start : self.at], f"{word}.{name}", start)

    def _backticked(self) -> str:
        start, at, parts = self.at, self.at + 1, []
        while True:
            end = self.text.find("`", at)
            if end < 0:
                raise InvalidInput(f"unterminated backtick name at {start}: close it with `")
            parts.append(self.text[at:end])
            if self.text.startswith("`", end + 1):
                parts.append("`")
                at = end + 2
                continue
            self.at = end + 1
            name = "".join(parts)
            if not name:
                raise InvalidInput(f"empty name in backticks at {start}")
            return name


# -- parsing ----------------------------------------------------------------------------------


def parse_query(text: str) -> Node:
    """The syntax tree of a search query; `InvalidInput` naming the position if it is bad."""
    if not isinstance(text, str):
        raise InvalidInput(f"a search query must be a string; got {type(text).__name__}")
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.lexer = _Lexer(text)
        self.token = self.lexer.next()
        self.depth = self.comparisons = self.values = 0  # bounded: see MAX_DEPTH and others

    def at(self, kind: TokenKind) -> bool:
        # A method, not `self.token.kind == ...`, which type checkers narrow across advance().
        return self.token.kind == kind

    def advance(self) -> Token:
        taken, self.token = self.token, self.lexer.next()
        return taken

    def parse(self) -> Node:
        if self.at("end"):
            return Everything()
        node = self.or_expr()
        if not self.at("end"):
            raise self.expected("'and', 'or' or the end of the query")
        return node

    def or_expr(self) -> Node:
        # Flat lists, not nested pairs: a long chain of `or` must not recurse per term.
        operands = [self.and_expr()]
        while self.token.is_keyword("or"):
            self.advance()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self) -> Node:
        operands = [self.not_expr()]
        while self.token.is_keyword("and"):
            self.advance()
            operands.append(self.not_expr())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def not_expr(self) -> Node:
        if not self.token.is_keyword("not") and not self.at("("):
            return self.comparison()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise InvalidInput(
                f"the query nests 'not' and parentheses more than {MAX_DEPTH} deep at "
                f"{self.token.position}; simplify it"
            )
        if self.advance().kind == "(":
            node = self.or_expr()
            if not self.at(")"):
                raise self.expected("'and', 'or' or ')'")
            self.advance()
        else:
            node = Not(self.not_expr())
        self.depth -= 1
        return node

    def comparison(self) -> Comparison:
        start = self.token.position
        node = self.comparison_body()
        self.comparisons += 1
        self.values += len(node.values)
        if self.comparisons > MAX_COMPARISONS or self.values > MAX_VALUES:
            raise InvalidInput(
                f"the query is too long at {start}: at most {MAX_COMPARISONS} comparisons and "
                f"{MAX_VALUES} values; search in parts"
            )
        return node

    def comparison_body(self) -> Comparison:
        field = self.field()
        operator = self.token
        if operator.kind == "op":
            self.advance()
            return Comparison(field, operator.value, (self.value(field, operator),))
        if operator.is_keyword("like", "ilike"):
            self.advance()
            _check_text_field(field, operator)
            value = self.token
            if value.kind != "string":
                raise self.expected("a quoted pattern", after=operator.text)
            if re.search(r"(?<!\\)(\\\\)*\\$", value.value):
                raise InvalidInput(
                    f"pattern {value.text} at {value.position} ends with the escape character "
                    "\\; write \\\\ for a backslash"
                )
            self.advance()
            return Comparison(field, operator.value, (value.value,))
        if operator.is_keyword("in"):
            self.advance()
            return Comparison(field, "in", self.value_list(field, operator))
        raise self.expected(f"an operator ({OPERATOR_HELP})", after=field.text)

    def field(self) -> Field:
        token = self.token
        if token.kind == "field":
            prefix, _, name = token.value.partition(".")
            kinds: dict[str, FieldKind] = {"metrics": "metric", "params": "param", "tags": "tag"}
            if prefix in kinds:
                self.advance()
                return Field(kinds[prefix], name, token.text, token.position)
            if prefix.lower() == "attributes" and name in ATTRIBUTES:
                self.advance()
                return Field("attribute", name, token.text, token.position)
        elif token.kind == "word" and token.value in ATTRIBUTES:
            self.advance()
            return Field("attribute", token.value, token.text, token.position)
        if token.kind in ("field", "word") and token.value not in KEYWORDS:
            raise InvalidInput(
                f"unknown field '{token.text}' at {token.position}: expected {FIELD_HELP}"
            )
        raise self.expected(f"a field ({FIELD_HELP})")

    def value_list(self, field: Field, operator: Token) -> tuple[Value, ...]:
        if not self.at("("):
            raise self.expected("'(' and a list of values", after=operator.text)
        opening = self.advance()
        values = [self.value(field, opening)]
        while self.at(","):
            values.append(self.value(field, self.advance()))
        if not self.at(")"):
            raise self.expected("',' or ')'")
        self.advance()
        return tuple(values)

    def value(self, field: Field, after: Token) -> Value:
        token = self.token
        wanted = _wanted_value(field)
        if token.kind == "number" and wanted != "string":
            self.advance()
            return float(token.value)
        if token.kind == "string" and wanted != "number":
            self.advance()
            return _attribute_value(field, token)
        raise self.expected(_describe(field, wanted), after=after.text)

    def expected(self, what: str, *, after: str | None = None) -> InvalidInput:
        where = f" after '{after}'" if after is not None else ""
        return InvalidInput(
            f"expected {what}{where} at {self.token.position}, got {self.token.shown()}"
        )


def _wanted_value(field: Field) -> Literal["number", "string", "either"]:
    if field.kind == "metric":
        return "number"
    if field.kind == "param":
        return "either"
    return "string"


def _describe(field: Field, wanted: str) -> str:
    if (field.kind, field.name) == ("attribute", "started_at"):
        return "an ISO date or date/time in quotes, e.g. '2024-05-01' or '2024-05-01T12:30Z'"
    if wanted == "number":
        return "a number"
    if wanted == "string":
        return f"a quoted string ({field.text} holds text)"
    return "a number or a quoted string"


def _check_text_field(field: Field, operator: Token) -> None:
    if field.kind == "metric" or (field.kind, field.name) == ("attribute", "started_at"):
        raise InvalidInput(
            f"'{operator.text}' at {operator.position} needs a text field; {field.text} is "
            f"compared with {', '.join(COMPARATORS)} or in"
        )


def _attribute_value(field: Field, token: Token) -> Value:
    if field.kind != "attribute":
        return token.value
    if field.name == "started_at":
        return _timestamp(token)
    if field.name == "status" and token.value not in STATUSES:
        raise InvalidInput(
            f"unknown status {token.text} at {token.position}: expected one of "
            f"{', '.join(STATUSES)}"
        )
    return token.value


def _timestamp(token: Token) -> datetime:
    try:
        moment = datetime.fromisoformat(token.value)
    except ValueError:
        raise InvalidInput(
            f"{token.text} at {token.position} is not an ISO date or date/time; expected e.g. "
            "'2024-05-01' or '2024-05-01T12:30:00+02:00'"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# -- compiling to SQL -------------------------------------------------------------------------


class _JsonText(FunctionElement[str]):
    """The text of a JSON string document; NULL for any other JSON value."""

    type = String()
    name = "json_text"
    inherit_cache = True


@compiles(_JsonText, "sqlite")
def _json_text_sqlite(element: _JsonText, compiler: SQLCompiler, **kw: Any) -> str:
    (document,) = element.clauses
    unquoted = func.json_extract(document, literal_column("'$'"))
    return compiler.process(_if_json_string(document, unquoted), **kw)


@compiles(_JsonText, "postgresql")
def _json_text_postgresql(element: _JsonText, compiler: SQLCompiler, **kw: Any) -> str:
    (document,) = element.clauses
    unquoted = cast(document, JSONB).op("#>>")(literal_column("'{}'"))
    return compiler.process(_if_json_string(document, unquoted), **kw)


def _if_json_string(document: Any, unquoted: ColumnElement[Any]) -> ColumnElement[Any]:
    # Only a document starting with a quote is parsed: params such as NaN are not valid JSON.
    return case((func.substr(document, 1, 1) == literal_column("'\"'"), unquoted))


class _CaseSensitiveLike(FunctionElement[bool]):
    """`text LIKE pattern ESCAPE '\\'`, case-sensitive on SQLite too (whose LIKE ignores case).

    Arguments: the text, the LIKE pattern, and the same pattern as a GLOB pattern for SQLite.
    """

    type = Boolean()
    name = "case_sensitive_like"
    inherit_cache = True


@compiles(_CaseSensitiveLike)
def _like_default(element: _CaseSensitiveLike, compiler: SQLCompiler, **kw: Any) -> str:
    text, pattern, _ = element.clauses
    return compiler.process(text.like(pattern, escape="\\").self_group(), **kw)


@compiles(_CaseSensitiveLike, "sqlite")
def _like_sqlite(element: _CaseSensitiveLike, compiler: SQLCompiler, **kw: Any) -> str:
    text, _, glob = element.clauses
    return compiler.process(text.op("GLOB", is_comparison=True)(glob).self_group(), **kw)


def _glob_pattern(like: str) -> str:
    """A LIKE pattern (`%`, `_`, `\\` escapes) as the GLOB pattern that matches the same text."""
    out, escaped = [], False
    for char in like:
        if escaped:
            out.append(f"[{char}]" if char in "*?[" else char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        else:
            out.append(f"[{char}]" if char in "*?[" else char)
    return "".join(out)  # the parser refused a pattern that ends with a lone backslash


Condition = Callable[[SQLColumnExpression[Any]], ColumnElement[bool]]
_COMPARE: dict[str, Callable[[SQLColumnExpression[Any], Any], ColumnElement[bool]]] = {
    "=": lambda column, value: column == value,
    "!=": lambda column, value: column != value,
    "<": lambda column, value: column < value,
    "<=": lambda column, value: column <= value,
    ">": lambda column, value: column > value,
    ">=": lambda column, value: column >= value,
}


def to_where(node: Node) -> ColumnElement[bool]:
    """The WHERE clause over `runs` that selects the runs `node` describes."""
    if isinstance(node, And):
        return and_(*(to_where(operand) for operand in node.operands))
    if isinstance(node, Or):
        return or_(*(to_where(operand) for operand in node.operands))
    if isinstance(node, Not):
        return not_(to_where(node.operand))
    if isinstance(node, Everything):
        return true()
    return _comparison(node)


def _comparison(node: Comparison) -> ColumnElement[bool]:
    field = node.field
    if field.kind == "metric":
        return _on_last_metric(field.name, node)
    if field.kind == "param":
        return _on_param(field.name, node)
    if field.kind == "tag":
        tag = aliased(RunTagRecord)
        return exists().where(
            tag.run_id == RunRecord.id, tag.key == field.name, _condition(node)(tag.value)
        )
    column: ColumnElement[Any] = getattr(RunRecord, field.name)
    # Every comparison is true or false, never NULL, so that `not` is the exact complement.
    return and_(column.is_not(None), _condition(node)(column))


def _condition(node: Comparison) -> Condition:
    """`node`'s test on one column, whose values are all of the type the parser checked."""
    values = node.values
    if node.op == "in":
        return lambda column: column.in_(list(values))
    if node.op == "like":
        glob = _glob_pattern(str(values[0]))
        return lambda column: _CaseSensitiveLike(column, literal(values[0]), literal(glob))
    if node.op == "ilike":
        return lambda column: column.ilike(values[0], escape="\\")
    compare = _COMPARE[node.op]
    return lambda column: compare(column, values[0])


def _on_last_metric(key: str, node: Comparison) -> ColumnElement[bool]:
    point, later = aliased(RunMetricRecord), aliased(RunMetricRecord)
    last_id = (
        select(later.id)
        .where(later.run_id == point.run_id, later.key == point.key)
        .order_by(later.step.desc(), later.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    # NULL stands for NaN, which differs from every number: only `!=` holds for it.
    test = _condition(node)(point.value)
    if node.op == "!=":
        test = or_(point.value.is_(None), test)
    return exists().where(point.run_id == RunRecord.id, point.key == key, point.id == last_id, test)


def _on_param(key: str, node: Comparison) -> ColumnElement[bool]:
    param = aliased(RunParamRecord)
    numbers = tuple(v for v in node.values if isinstance(v, float))
    texts = tuple(v for v in node.values if not isinstance(v, float))
    tests = []
    if numbers:
        number = case((param.value.regexp_match(JSON_NUMBER), cast(param.value, Float)))
        tests.append(_condition(Comparison(node.field, node.op, numbers))(number))
    if texts:
        tests.append(_condition(Comparison(node.field, node.op, texts))(_JsonText(param.value)))
    return exists().where(param.run_id == RunRecord.id, param.key == key, or_(*tests))


# -- the API ----------------------------------------------------------------------------------


def search_runs(query: str, *, project: Project | None = None, limit: int = 100) -> list[RunInfo]:
    """The newest runs that match `query` (see this module's docstring), newest first.

    >>> search_runs("metrics.auc > 0.9 and not status = 'failed'", limit=10)
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"limit must be a positive integer; got {limit!r}")
    where = to_where(parse_query(query))
    project = project or current()
    statement = (
        select(RunRecord.id)
        .where(where)
        .order_by(RunRecord.started_at.desc(), RunRecord.id.desc())
        .limit(limit)
    )
    with project.metadata.read() as session:
        return load_runs(session, list(session.scalars(statement)))
