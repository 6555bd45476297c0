"""Amazon Personalize's filter expression language, compiled once (CreateFilter) and applied at serving.

Grammar (Personalize guide, "Filter expression structure and elements" and "Combining multiple
expressions"):

    filter     := expression ("|" expression)*
    expression := (INCLUDE | EXCLUDE) ItemID WHERE chain [IF user_chain]
    chain      := condition ((AND | OR) condition)*      AND binds tighter than OR; every condition
                                                          uses the dataset of the first one
    condition  := Items.FIELD (IN | NOT IN) "(" values ")" | Items.FIELD op value
                | Interactions.EVENT_TYPE (IN | NOT IN) "(" values ")"
    user_chain := CurrentUser.FIELD (IN | NOT IN | op) ... (AND ...)*   (Users.FIELD is accepted too)
    values     := value ("," value)*;  value := "string" | number | $PARAM | CurrentItem.FIELD | "*"
    op         := = | != | < | <= | > | >=

Semantics: IN matches exact strings; an item field holding several values separated by `|`
matches if any of them does. Comparisons are numeric (`=`/`!=` fall back to string equality).
`Interactions.EVENT_TYPE IN ("click")` selects items the user has a click on ("*" = any type).
Expressions combine as Personalize documents: INCLUDE results are united, EXCLUDE results are
united, and the final set is (∪ INCLUDE, or everything without one) − (∪ EXCLUDE).
An expression whose IF is false for the user, or whose $PARAM has no value in filterValues, is
not applied. filterValues use Personalize's format: `"\"Comedy\",\"Action\""` or `"10"`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<param>\$[A-Za-z_][A-Za-z0-9_]*)
    | (?P<num>-?\d+(?:\.\d+)?(?![A-Za-z_]))
    | (?P<op><=|>=|!=|=|<|>)
    | (?P<punct>[(),|*])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
    )""",
    re.VERBOSE,
)
ITEM_DATASETS = {"ITEMS", "INTERACTIONS"}
USER_DATASETS = {"CURRENTUSER", "USERS"}
MAX_LENGTH = 2500  # Personalize's limit on filterExpression


class FilterError(ValueError):
    """The filter expression is invalid; the message says where and why."""


@dataclass
class Condition:
    dataset: str  # ITEMS | INTERACTIONS | CURRENTUSER
    field: str
    op: str  # IN | NOT IN | a comparison
    values: list[tuple[str, str]]  # ("lit" | "param" | "item", text)


@dataclass
class Expression:
    include: bool
    any_of: list[list[Condition]]  # OR of AND groups
    user_conditions: list[Condition] = field(default_factory=list)

    @property
    def parameters(self) -> set[str]:
        conds = [c for group in self.any_of for c in group] + self.user_conditions
        return {text for c in conds for kind, text in c.values if kind == "param"}


@dataclass
class CompiledFilter:
    expression: str
    expressions: list[Expression]

    @property
    def parameters(self) -> set[str]:
        return set().union(*(e.parameters for e in self.expressions))

    def allowed(self, model, user_id=None, item_id=None, filter_values: dict | None = None) -> np.ndarray:
        """Boolean mask over the model's catalogue: True where the item may be recommended."""
        values = {k.lstrip("$"): parse_filter_value(v) for k, v in (filter_values or {}).items()}
        n = len(model.catalog)
        included, excluded, any_include = np.zeros(n, bool), np.zeros(n, bool), False
        for expr in self.expressions:
            if not expr.parameters <= set(values):
                continue
            if not all(_user_condition(c, model, user_id, values) for c in expr.user_conditions):
                continue
            hit = np.zeros(n, bool)
            for group in expr.any_of:
                part = np.ones(n, bool)
                for cond in group:
                    part &= _item_condition(cond, model, user_id, item_id, values)
                hit |= part
            if expr.include:
                included |= hit
                any_include = True
            else:
                excluded |= hit
        return (included if any_include else np.ones(n, bool)) & ~excluded


def compile_filter(expression: str) -> CompiledFilter:
    if not isinstance(expression, str) or not expression.strip():
        raise FilterError("The filter expression is empty.")
    if len(expression) > MAX_LENGTH:
        raise FilterError(f"The filter expression is longer than {MAX_LENGTH} characters.")
    parts = _split_top_level(expression)
    return CompiledFilter(expression, [_Parser(part, i + 1).expression() for i, part in enumerate(parts)])


def parse_filter_value(raw) -> list[str]:
    """`"\"a\",\"b\""` -> ["a", "b"]; `"10"` -> ["10"]."""
    text = str(raw).strip()
    quoted = re.findall(r'"((?:[^"\\]|\\.)*)"', text)
    if quoted:
        return [q.replace('\\"', '"') for q in quoted]
    return [v.strip() for v in text.split(",") if v.strip()]


def _split_top_level(expression: str) -> list[str]:
    parts, depth, current, in_string = [], 0, [], False
    for ch in expression:
        if ch == '"':
            in_string = not in_string
        elif not in_string and ch in "()":
            depth += 1 if ch == "(" else -1
        if ch == "|" and not in_string and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    if any(not p.strip() for p in parts):
        raise FilterError(
            "Empty expression around '|': each side of '|' must be a full INCLUDE/EXCLUDE expression."
        )
    return parts


class _Parser:
    def __init__(self, text: str, number: int):
        self.text, self.number, self.pos = text, number, 0
        self.tokens = self._tokenize(text)

    def _tokenize(self, text):
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise self._error(f"unexpected character {text[pos:].strip()[:1]!r} at position {pos}")
            kind = m.lastgroup
            tokens.append((kind, m.group(kind)))
            pos = m.end()
        return tokens

    def _error(self, message: str) -> FilterError:
        return FilterError(f"Invalid filter expression {self.number}: {message}.")

    def peek(self, offset=0):
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else (None, None)

    def word(self, expected: str) -> None:
        kind, text = self.peek()
        if kind != "word" or text.upper() != expected.upper():
            raise self._error(f"expected {expected} but found {text or 'the end'}")
        self.pos += 1

    def expression(self) -> Expression:
        kind, text = self.peek()
        if kind != "word" or text.upper() not in ("INCLUDE", "EXCLUDE"):
            raise self._error(f"must start with INCLUDE or EXCLUDE, found {text or 'nothing'}")
        self.pos += 1
        include = text.upper() == "INCLUDE"
        self.word("ItemID")
        self.word("WHERE")
        any_of, first_dataset = [[]], None
        while True:
            cond = self.condition(ITEM_DATASETS)
            first_dataset = first_dataset or cond.dataset
            if cond.dataset != first_dataset:
                raise self._error(
                    f"conditions chained with AND/OR must use the dataset of the first one ({first_dataset.title()})"
                )
            any_of[-1].append(cond)
            kind, text = self.peek()
            if kind == "word" and text.upper() == "AND":
                self.pos += 1
            elif kind == "word" and text.upper() == "OR":
                self.pos += 1
                any_of.append([])
            else:
                break
        users = []
        if self.peek()[0] == "word" and self.peek()[1].upper() == "IF":
            self.pos += 1
            users.append(self.condition(USER_DATASETS))
            while self.peek()[0] == "word" and self.peek()[1].upper() == "AND":
                self.pos += 1
                users.append(self.condition(USER_DATASETS))
        if self.pos < len(self.tokens):
            raise self._error(
                f"unexpected {self.peek()[1]!r} after the conditions (IF may appear once, at the end)"
            )
        return Expression(include, any_of, users)

    def condition(self, datasets: set[str]) -> Condition:
        kind, text = self.peek()
        if kind != "word" or "." not in text:
            raise self._error(f"expected a dataset field such as Items.GENRES, found {text or 'the end'}")
        dataset, fld = text.split(".", 1)
        dataset = dataset.upper()
        if dataset not in datasets:
            where = (
                "in an IF condition (use CurrentUser.FIELD)" if datasets is USER_DATASETS else "after WHERE"
            )
            raise self._error(f"{text} cannot be used {where}")
        dataset = "CURRENTUSER" if dataset == "USERS" else dataset
        if dataset == "INTERACTIONS" and fld.upper() != "EVENT_TYPE":
            raise self._error(f"only Interactions.EVENT_TYPE can be filtered on, not {text}")
        self.pos += 1
        op = self.operator()
        if op in ("IN", "NOT IN"):
            values = self.value_list()
        else:
            values = [self.value()]
            if dataset == "INTERACTIONS":
                raise self._error("Interactions.EVENT_TYPE takes IN or NOT IN")
        return Condition(dataset, fld.upper(), op, values)

    def operator(self) -> str:
        kind, text = self.peek()
        if kind == "op":
            self.pos += 1
            return text
        if kind == "word" and text.upper() == "IN":
            self.pos += 1
            return "IN"
        if kind == "word" and text.upper() == "NOT":
            self.pos += 1
            self.word("IN")
            return "NOT IN"
        raise self._error(
            f"expected IN, NOT IN or a comparison (=, !=, <, <=, >, >=), found {text or 'the end'}"
        )

    def value_list(self) -> list[tuple[str, str]]:
        if self.peek() != ("punct", "("):
            raise self._error('IN needs a parenthesised list of values, e.g. ("a", "b") or ($PARAM)')
        self.pos += 1
        values = [self.value()]
        while self.peek() == ("punct", ","):
            self.pos += 1
            values.append(self.value())
        if self.peek() != ("punct", ")"):
            raise self._error("missing ')' after the list of values")
        self.pos += 1
        return values

    def value(self) -> tuple[str, str]:
        kind, text = self.peek()
        self.pos += 1
        if kind == "str":
            return ("lit", text[1:-1].replace('\\"', '"'))
        if kind == "num":
            return ("lit", text)
        if kind == "param":
            return ("param", text[1:])
        if (kind, text) == ("punct", "*"):
            return ("lit", "*")
        if kind == "word" and text.upper().startswith("CURRENTITEM."):
            return ("item", text.split(".", 1)[1].upper())
        raise self._error(
            f'expected a value ("text", number, $PARAM or CurrentItem.FIELD), found {text or "the end"}'
        )


def _resolve(values, params, model, item_id) -> list[str]:
    out = []
    for kind, text in values:
        if kind == "lit":
            out.append(text)
        elif kind == "param":
            out.extend(params[text])
        else:
            index = model.catalog.index.get(str(item_id)) if item_id is not None else None
            column = model.catalog.meta.get(text)
            if index is not None and column is not None:
                out.extend(v for v in str(column[index]).split("|") if v)
    return out


def _compare(left: np.ndarray, op: str, right: str) -> np.ndarray:
    """Numeric comparison of a column of strings with one value (non-numbers never match)."""
    try:
        target = float(right)
    except ValueError:
        if op in ("=", "!="):
            equal = left == right
            return equal if op == "=" else ~equal
        raise FilterError(f"{op} needs a number, got {right!r}") from None
    numbers = np.array([_to_float(v) for v in left.tolist()])
    with np.errstate(invalid="ignore"):
        result = {
            "=": numbers == target,
            "!=": numbers != target,
            "<": numbers < target,
            "<=": numbers <= target,
            ">": numbers > target,
            ">=": numbers >= target,
        }[op]
    return result & ~np.isnan(numbers)


def _to_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return np.nan


def _item_condition(cond: Condition, model, user_id, item_id, params) -> np.ndarray:
    n = len(model.catalog)
    values = _resolve(cond.values, params, model, item_id)
    if cond.dataset == "INTERACTIONS":
        items, _, _, masks = model.history.profile(str(user_id)) if user_id else (np.zeros(0, int),) * 4
        bits = model.history.event_bits(values)
        hit = np.zeros(n, bool)
        hit[np.asarray(items, dtype=np.int64)[(np.asarray(masks, dtype=np.int64) & bits) != 0]] = True
        return hit if cond.op == "IN" else ~hit
    column = model.catalog.meta.get(cond.field)
    if column is None:
        column = np.full(n, "", dtype=str)
    if cond.op in ("IN", "NOT IN"):
        wanted = set(values)
        hit = np.array([any(v in wanted for v in cell.split("|")) for cell in column.tolist()], dtype=bool)
        return hit if cond.op == "IN" else ~hit
    return _compare(column, cond.op, values[0]) if values else np.zeros(n, bool)


def _user_condition(cond: Condition, model, user_id, params) -> bool:
    record = model.user_meta.get(str(user_id)) if user_id is not None else None
    if record is None or cond.field not in record:
        return False
    cell = np.array([str(record[cond.field])], dtype=str)
    values = _resolve(cond.values, params, model, None)
    if cond.op in ("IN", "NOT IN"):
        hit = any(v in set(values) for v in cell[0].split("|"))
        return hit if cond.op == "IN" else not hit
    return bool(_compare(cell, cond.op, values[0])[0]) if values else False
