"""Argo Rollouts' analysis, as far as the AnalysisTemplates in k8s/argo use it, in Python.

No Python port of Argo's evaluator exists (it is Go: expr-lang/expr inside argo-rollouts'
``utils/evaluate``), so this is a small evaluator of the expr subset the templates use,
with expr's runtime rules where they decide a phase, plus the steps around it:

- ``condition``: expr over ``result``: literals (numbers, strings, true, false, nil,
  arrays), ``result``, member access ``.name`` and ``?.name``, indexing ``[i]``, ``len()``,
  ``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=``, ``&&`` ``||`` ``and`` ``or``, ``!`` ``not``, unary
  ``-``, ``??``, parentheses, with expr's precedences (``??`` binds tightest, and, as
  expr's parser insists, cannot be followed by another binary operator at the same level
  without parentheses: ``a ?? 1 >= 0`` does not compile, ``(a ?? 1) >= 0`` does). As in expr:
  ``<``-style comparisons only between two numbers or two strings (a null there is an
  error), ``==`` is false across types and true for nil == nil, reading a field of a null
  is an error unless the access is ``?.`` (which makes the rest of the chain null), a
  missing key of an object is null, ``&&``/``||`` short-circuit and need booleans, and
  the whole expression must give a boolean. An unknown name, or any construct outside the
  subset, is refused when the expression is read (expr refuses unknown names at compile
  time too), so a template cannot be judged by rules this module does not have.
- ``web_value``: the web provider's jsonPath (``{$}`` or ``{$.a.b}``; a missing key is an
  error, as with Kubernetes' jsonpath).
- ``evaluate_result``: ``EvaluateResult`` (success, failure, neither, error).
- ``measure``: one measurement of a web metric from an HTTP answer (no answer or a non-2xx
  is an Error measurement, as the web provider makes it).
- ``assess``: ``assessMetricStatus``: counts, failureLimit, inconclusiveLimit,
  consecutiveErrorLimit (default 4), consecutiveSuccessLimit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR, RUNNING = "Successful", "Failed", "Inconclusive", "Error", "Running"
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
# Argo's order of completed phases, best to worst (utils/analysis/helpers.go).
PHASE_ORDER = [SUCCESSFUL, RUNNING, INCONCLUSIVE, ERROR, FAILED]


class ExprError(Exception):
    """What expr reports as an error, at compile time or at run time."""


class Unsupported(Exception):
    """A construct outside the subset this module evaluates."""


TOKEN = re.compile(r"""\s*(?:
    (?P<number>\d+\.\d*|\d*\.\d+|\d+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\?\?|\?\.|&&|\|\||==|!=|<=|>=|[<>!()\[\].,\-])
)""", re.X)
BINARY = {"??": 500, "==": 20, "!=": 20, "<": 20, "<=": 20, ">": 20, ">=": 20,
          "&&": 15, "and": 15, "||": 10, "or": 10}
KEYWORDS = {"true": True, "false": False, "nil": None}
FUNCTIONS = {"len"}


def tokenize(text: str) -> list[tuple[str, object]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            raise Unsupported(f"cannot read {text[position:]!r}")
        position = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "number":
            tokens.append(("value", float(value) if "." in value else int(value)))
        elif kind == "string":
            tokens.append(("value", json.loads('"' + value[1:-1].replace('"', '\\"') + '"')
                           if value[0] == "'" else json.loads(value)))
        elif kind == "name" and value in KEYWORDS:
            tokens.append(("value", KEYWORDS[value]))
        elif kind == "name" and value in ("and", "or", "not"):
            tokens.append(("op", value))
        else:
            tokens.append((kind, value))
    return tokens


class Parser:
    """Precedence climbing over the tokens; builds nested tuples that ``_eval`` runs."""

    def __init__(self, text: str, names: set[str]):
        self.tokens = tokenize(text)
        self.names = names
        self.at = 0

    def peek(self):
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", None)

    def take(self, op=None):
        token = self.peek()
        if op is not None and token != ("op", op):
            raise Unsupported(f"expected {op!r}, got {token[1]!r}")
        self.at += 1
        return token

    def parse(self):
        tree = self.expression(0)
        if self.peek()[0] != "end":
            raise Unsupported(f"unexpected {self.peek()[1]!r}")
        return tree

    def expression(self, floor: int):
        left = self.unary()
        previous = ""
        while True:
            kind, op = self.peek()
            if kind != "op" or op not in BINARY or BINARY[op] < floor:
                return left
            if previous == "??" and op != "??":  # expr: parser.go, parseExpression
                raise ExprError(f"Operator ({op}) and coalesce expressions (??) cannot be mixed. "
                                "Wrap either by parentheses.")
            previous = op
            self.take()
            right = self.expression(BINARY[op] + 1)  # every binary operator here is left-associative
            left = ("binary", {"and": "&&", "or": "||"}.get(op, op), left, right)

    def unary(self):
        kind, op = self.peek()
        if kind == "op" and op in ("!", "not"):
            self.take()
            return ("not", self.expression(50))  # expr: unary not binds at 50, above comparisons
        if kind == "op" and op == "-":
            self.take()
            return ("neg", self.expression(90))
        return self.postfix()

    def postfix(self):
        base = self.primary()
        steps = []
        while True:
            kind, op = self.peek()
            if (kind, op) in (("op", "."), ("op", "?.")):
                self.take()
                name_kind, name = self.take()
                if name_kind != "name":
                    raise Unsupported(f"expected a field name after {op}, got {name!r}")
                steps.append(("member", name, op == "?."))
            elif (kind, op) == ("op", "["):
                self.take()
                index = self.expression(0)
                self.take("]")
                steps.append(("index", index, False))
            else:
                return ("chain", base, steps) if steps else base

    def primary(self):
        kind, value = self.take()
        if kind == "value":
            return ("value", value)
        if kind == "name":
            if self.peek() == ("op", "("):
                if value not in FUNCTIONS:
                    raise Unsupported(f"function {value}() is not in this evaluator")
                self.take("(")
                argument = self.expression(0)
                self.take(")")
                return ("call", value, argument)
            if value not in self.names:
                raise ExprError(f"unknown name {value}")
            return ("name", value)
        if (kind, value) == ("op", "("):
            inner = self.expression(0)
            self.take(")")
            return inner
        if (kind, value) == ("op", "["):
            items = []
            while self.peek() != ("op", "]"):
                items.append(self.expression(0))
                if self.peek() == ("op", ","):
                    self.take()
            self.take("]")
            return ("array", items)
        raise Unsupported(f"unexpected {value!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(a, b) -> bool:
    if _is_number(a) and _is_number(b):
        return a == b
    if a is None or b is None:
        return a is None and b is None
    if type(a) is not type(b):
        return False
    return a == b


def _compare(op: str, a, b) -> bool:
    if not ((_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise ExprError(f"invalid operation: {op} (mismatched types {_type(a)} and {_type(b)})")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _type(value) -> str:
    if value is None:
        return "<nil>"
    return {bool: "bool", int: "int", float: "float64", str: "string", list: "[]interface {}",
            dict: "map[string]interface {}"}.get(type(value), type(value).__name__)


def _boolean(value, op: str) -> bool:
    if not isinstance(value, bool):
        raise ExprError(f"invalid operation: {op} on {_type(value)}")
    return value


def _fetch(value, key):
    if value is None:
        raise ExprError(f"cannot fetch {key} from <nil>")
    if isinstance(value, dict):
        return value.get(key)
    if isinstance(value, (list, str)):
        if not _is_number(key):
            raise ExprError(f"cannot fetch {key} from {_type(value)}")
        index = int(key) + (len(value) if key < 0 else 0)
        if not 0 <= index < len(value):
            raise ExprError(f"index out of range: {int(key)} (array length is {len(value)})")
        return value[index]
    raise ExprError(f"cannot fetch {key} from {_type(value)}")


def _eval(node, env):
    kind = node[0]
    if kind == "value":
        return node[1]
    if kind == "name":
        return env[node[1]]
    if kind == "array":
        return [_eval(item, env) for item in node[1]]
    if kind == "call":
        argument = _eval(node[2], env)
        if not isinstance(argument, (list, str, dict)):
            raise ExprError(f"invalid argument for len (type {_type(argument)})")
        return len(argument)
    if kind == "chain":
        value = _eval(node[1], env)
        for step, key, optional in node[2]:
            if value is None and optional:
                return None  # `?.` on a null: the whole chain is null
            value = _fetch(value, key if step == "member" else _eval(key, env))
        return value
    if kind == "not":
        return not _boolean(_eval(node[1], env), "!")
    if kind == "neg":
        value = _eval(node[1], env)
        if not _is_number(value):
            raise ExprError(f"invalid operation: - on {_type(value)}")
        return -value
    op, left = node[1], node[2]
    if op == "??":
        value = _eval(left, env)
        return _eval(node[3], env) if value is None else value
    if op in ("&&", "||"):
        first = _boolean(_eval(left, env), op)
        if first == (op == "||"):
            return first
        return _boolean(_eval(node[3], env), op)
    a, b = _eval(left, env), _eval(node[3], env)
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    return _compare(op, a, b)


def condition(text: str, result) -> bool:
    """Argo's ``EvalCondition``: the expression's boolean over ``result``, or an ExprError."""
    tree = Parser(text, {"result"}).parse()
    value = _eval(tree, {"result": result})
    if not isinstance(value, bool):
        raise ExprError(f"expected bool, but got {_type(value)}")
    return value


def evaluate_result(result, metric: dict) -> str:
    """Argo's ``EvaluateResult``: the phase of one measurement whose value is ``result``."""
    success_text, failure_text = metric.get("successCondition", ""), metric.get("failureCondition", "")
    try:
        success = condition(success_text, result) if success_text else False
        failure = condition(failure_text, result) if failure_text else False
    except ExprError:
        return ERROR
    if not success_text and not failure_text:
        return SUCCESSFUL
    if success_text and not failure_text:
        failure = not success
    elif failure_text and not success_text:
        success = not failure
    if failure:
        return FAILED
    return SUCCESSFUL if success else INCONCLUSIVE


class JsonPathError(Exception):
    """The web provider found no value at the jsonPath."""


def web_value(document, json_path: str):
    """The value the web provider's jsonPath selects: ``{$}`` or ``{$.a.b}``."""
    match = re.fullmatch(r"\{\$((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}", json_path)
    if not match:
        raise Unsupported(f"jsonPath {json_path!r} is not in this evaluator")
    value = document
    for key in filter(None, match.group(1).split(".")):
        if not isinstance(value, dict) or key not in value:
            raise JsonPathError(f"{key} is not found")
        value = value[key]
    return value


def measure(metric: dict, status: int | None, body: str = "") -> str:
    """One measurement of a web metric from an answer (``status`` None: no answer at all)."""
    if status is None or not 200 <= status < 300:
        return ERROR
    try:
        document = json.loads(body)
    except ValueError:
        return evaluate_result(body, metric)  # the provider evaluates a non-JSON body as a string
    try:
        value = web_value(document, metric["provider"]["web"].get("jsonPath", "{$}"))
    except JsonPathError:
        return ERROR
    return evaluate_result(value, metric)


@dataclass
class MetricResult:
    """The counters Argo keeps per metric (analysis/analysis.go)."""

    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_success: int = 0

    def add(self, phase: str) -> None:
        if phase == ERROR:  # errors do not count towards `count`
            self.error += 1
            self.consecutive_error += 1
            self.consecutive_success = 0
            return
        self.count += 1
        self.consecutive_error = 0
        if phase == SUCCESSFUL:
            self.successful += 1
            self.consecutive_success += 1
        else:
            self.consecutive_success = 0
            if phase == FAILED:
                self.failed += 1
            else:
                self.inconclusive += 1


def assess(metric: dict, result: MetricResult) -> str:
    """Argo's ``assessMetricStatus`` once the last measurement finished."""
    failure_limit = int(metric.get("failureLimit", 0))
    phase = ""
    if failure_limit >= 0 and result.failed > failure_limit:
        phase = FAILED
    if result.inconclusive > int(metric.get("inconclusiveLimit", 0)):
        phase = INCONCLUSIVE
    if result.consecutive_error > int(metric.get("consecutiveErrorLimit", DEFAULT_CONSECUTIVE_ERROR_LIMIT)):
        phase = ERROR
    if phase:
        return phase
    success_limit = int(metric.get("consecutiveSuccessLimit", 0))
    if success_limit > 0 and result.consecutive_success >= success_limit:
        return SUCCESSFUL
    count = metric.get("count")
    if count is not None and result.count >= int(count):
        failure_applicable = failure_limit >= 0
        if failure_applicable and success_limit > 0:
            return INCONCLUSIVE
        if success_limit > 0:
            return FAILED
        return SUCCESSFUL
    return RUNNING


def run_metric(metric: dict, measurements: list[str]) -> tuple[str, int]:
    """Feed measurement phases until the metric completes; (its phase, measurements used)."""
    result = MetricResult()
    for used, phase in enumerate(measurements, 1):
        result.add(phase)
        verdict = assess(metric, result)
        if verdict != RUNNING:
            return verdict, used
    return RUNNING, len(measurements)


def worst(phases: list[str]) -> str:
    """The analysis run's phase: the worst of its metrics' phases."""
    return max(phases, key=PHASE_ORDER.index)
