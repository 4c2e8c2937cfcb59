r"""Graders: extract a final answer from generated text and compare it with a reference.

A grader is chosen per request by name; ``get_grader`` raises ``NotFoundError`` for an
unknown name so the edge can answer with a clear status instead of failing mid-run.

Graders:

* ``exact``: last ``\boxed{}``, else last "Answer:" line, else last number; equal after
  case/space/punctuation normalisation.
* ``math``: last ``\boxed{}``, else the last final-answer statement ("The final answer is X",
  "Final Answer: X", "Answer: X"); no last-number fallback, because a completion that stops
  mid-computation would otherwise be graded on whatever number it happened to end with.
  Equivalence is decided by ``math-verify`` (fractions, decimals, LaTeX, roots, percentages,
  sets, tuples, intervals, equations like ``x = 3`` against ``3``).
* ``choice``: a single option letter A-E ("Answer: (B)", ``\boxed{C}``, "the answer is D"),
  compared case-insensitively with the reference letter.

``math-verify`` bounds its own work with ``signal.alarm``, which raises off the main thread
and cancels any other SIGALRM user (servers, pytest-timeout), so the math grader turns those
timeouts off (``parsing_timeout=None``, ``timeout_seconds=None``) and bounds the work itself:

* each comparison runs in a worker process (a small pool shared by all threads) and one that
  takes longer than its time limit is killed with its worker; some inputs (huge binomials,
  high powers of sums) keep sympy busy for hours, and a thread cannot be stopped;
* answers longer than ``MAX_MATH_ANSWER_CHARS`` are compared as plain strings, and parsed
  expressions known to explode (exponent towers such as ``10^{10^{10}}``, factorials of huge
  numbers) are refused before any evaluation, so they do not cost a worker.

The grader is therefore safe to call from worker threads, and it never raises: an answer it
cannot parse, or cannot compare in time, is graded not correct.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import resource
import select
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException

from cot_transfer.domain.errors import NotFoundError


class Grader(Protocol):
    name: str

    def extract(self, text: str) -> str | None:
        """The final answer stated in ``text``, or None when it states none."""

    def is_correct(self, extracted: str | None, reference: str) -> bool:
        """Whether an extracted answer matches the reference answer."""


@dataclass(frozen=True)
class GradedAnswer:
    extracted: str | None
    correct: bool


def grade(grader: Grader, text: str, reference: str) -> GradedAnswer:
    extracted = grader.extract(text)
    return GradedAnswer(extracted=extracted, correct=grader.is_correct(extracted, reference))


_ANSWER_LINE = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:=]?\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_BOXED = re.compile(r"\\(?:boxed|fbox)\b")


def last_boxed_content(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``), with nested braces balanced.

    The brace-less form ``\boxed 5`` yields ``5``. An unclosed last box (a completion cut
    off mid-answer) yields None rather than an earlier box, since the text's final answer
    is the unfinished one.
    """
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    position = matches[-1].end()
    while position < len(text) and text[position] in " \t":
        position += 1
    if position >= len(text):
        return None
    if text[position] != "{":
        bare = re.match(r"[^\s$]+", text[position:])
        return bare.group(0) if bare else None
    depth = 0
    for index in range(position, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[position + 1 : index].strip()
    return None


def last_answer_line(text: str) -> str | None:
    """The text after the last "Answer:" marker, up to the end of its line."""
    found: str | None = None
    for line in text.splitlines():
        match = _ANSWER_LINE.search(line)
        if match:
            found = match.group(1).strip()
    return found or None


# "Final Answer: The final answer is $5$." has two markers; the statement starts after the last.
_FINAL_ANSWER_MARKER = re.compile(
    r"final\s+answer\s*(?:is\b|:|=)?|the\s+(?:correct\s+)?answer\s+is\b|\banswer\s*(?:is\b|:)",
    re.IGNORECASE,
)
# Bold and headings only: a single "*" may be multiplication and "_" a subscript.
_MARKDOWN_EMPHASIS = re.compile(r"\*\*|^\s*#{1,6}\s*")
_TRAILING_CLAUSE = re.compile(r"(?:\.\s|\s+I hope it is correct|,\s+(?:so|which|because|since)\b).*$", re.IGNORECASE)
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _strip_math_delimiters(text: str) -> str:
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for opening, closing in _MATH_DELIMITERS:
            if len(text) > len(opening) + len(closing) and text.startswith(opening) and text.endswith(closing):
                text = text[len(opening) : -len(closing)].strip()
                changed = True
    return text


def final_answer_statement(text: str) -> str | None:
    """The answer after the last final-answer marker ("The final answer is", "Answer:").

    A marker alone on its line ("**Final Answer**") takes the next non-empty line. Trailing
    prose ("I hope it is correct", ". This is because ...") and outer math delimiters are cut.
    """
    lines = [_MARKDOWN_EMPHASIS.sub("", line) for line in text.splitlines()]
    for index in range(len(lines) - 1, -1, -1):
        markers = list(_FINAL_ANSWER_MARKER.finditer(lines[index]))
        if not markers:
            continue
        statement = lines[index][markers[-1].end() :].strip(" :\t")
        if not statement:
            statement = next((line.strip() for line in lines[index + 1 :] if line.strip()), "")
        statement = _TRAILING_CLAUSE.sub("", statement).strip().rstrip(".").strip()
        statement = _strip_math_delimiters(statement).rstrip(".").strip()
        if statement:
            return statement
    return None


def normalize_answer(answer: str) -> str:
    """Case-, space- and punctuation-insensitive form for exact comparison."""
    text = unicodedata.normalize("NFKC", answer).strip().lower()
    text = text.strip("$ ")
    text = text.rstrip(".")
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", text)
    return re.sub(r"\s+", "", text)


class ExactGrader:
    """Extracts the last boxed answer, else the last "Answer:" line, else the last number;
    correct when it equals the reference after normalisation."""

    name = "exact"

    def extract(self, text: str) -> str | None:
        boxed = last_boxed_content(text)
        if boxed is not None:
            return boxed
        line = last_answer_line(text)
        if line is not None:
            return line
        numbers = _NUMBER.findall(text)
        return numbers[-1] if numbers else None

    def is_correct(self, extracted: str | None, reference: str) -> bool:
        if extracted is None:
            return False
        return normalize_answer(extracted) == normalize_answer(reference)


MAX_MATH_ANSWER_CHARS = 1000
# Exact arithmetic on b**e or n! stalls sympy for hours once e or n reaches the billions; real
# answers stay far below these bounds. The worker's time limit catches what these miss.
MAX_NUMERIC_EXPONENT = 10_000
MAX_FACTORIAL_ARGUMENT = 10_000
DEFAULT_MATH_TIMEOUT_SECONDS = 5.0

_MATH_EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())
_TIMEOUTS_DISABLED_NOTICE = "Timeout is disabled"
_logger = logging.getLogger(__name__)


class _DropTimeoutsDisabledNotice(logging.Filter):
    """math-verify warns once that its timeouts are off; the math grader bounds time itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_TIMEOUTS_DISABLED_NOTICE)


for _logger_name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_logger_name).addFilter(_DropTimeoutsDisabledNotice())


_FACTORIALS = (sympy.factorial, sympy.factorial2, sympy.subfactorial)


def _magnitude_exceeds(value: sympy.Basic, bound: int) -> bool:
    """Whether a numeric expression is larger than ``bound`` in absolute value; an expression
    that cannot be evaluated counts as too large, since it cannot be shown to be small."""
    try:
        magnitude = sympy.Abs(value.evalf(15))
        return bool(magnitude > bound) if magnitude.is_comparable else True
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return True


def _is_tractable(expression: object) -> bool:
    """False for expressions whose comparison is known to run unbounded (see module docstring).

    Inner nodes are checked before outer ones, so evaluating an exponent never meets an
    exponent that was not already shown to be bounded.
    """
    if isinstance(expression, sympy.MatrixBase):
        return all(_is_tractable(entry) for entry in expression)
    if not isinstance(expression, sympy.Basic):
        return True
    for node in sympy.postorder_traversal(expression):
        if isinstance(node, sympy.Pow):
            if node.exp.is_number and _magnitude_exceeds(node.exp, MAX_NUMERIC_EXPONENT):
                return False
        elif isinstance(node, _FACTORIALS):
            argument = node.args[0]
            if argument.is_number and _magnitude_exceeds(argument, MAX_FACTORIAL_ARGUMENT):
                return False
    return True


def _parse_math(answer: str) -> list[object]:
    """math-verify's parse of a bare answer, with signal-based timeouts off; [] when unparsable."""
    # Delimiters make math-verify read the whole answer as one LaTeX expression rather than
    # hunting for the last number in it.
    text = answer if answer.lstrip().startswith(("$", "\\(", "\\[")) else f"${answer}$"
    try:
        parsed: list[object] = parse(text, extraction_config=_MATH_EXTRACTION, parsing_timeout=None)
    except (Exception, TimeoutException):
        return []
    return parsed


def _all_tractable(parsed: Iterable[object]) -> bool:
    try:
        return all(_is_tractable(item) for item in parsed)
    except (Exception, TimeoutException):
        return False


def compare_math_in_process(extracted: str, reference: str) -> bool:
    """The comparison itself, in the calling thread and without a time limit; never raises.

    Falls back to normalised string equality when math-verify reads neither side, so plain
    text answers ("Monday") still compare.
    """
    if len(extracted) > MAX_MATH_ANSWER_CHARS or len(reference) > MAX_MATH_ANSWER_CHARS:
        return normalize_answer(extracted) == normalize_answer(reference)
    gold = _parse_math(reference)
    target = _parse_math(extracted)
    if not gold or not target:
        return normalize_answer(extracted) == normalize_answer(reference)
    if not (_all_tractable(gold) and _all_tractable(target)):
        return False
    try:
        # verify is asymmetric: the reference goes first, as math-verify's "gold".
        return bool(verify(gold, target, timeout_seconds=None))
    except (Exception, TimeoutException):
        return False


# The worker protocol: after importing, the worker writes "ready"; then for every request line
# (a JSON array [extracted, reference]) it writes "1" (equivalent) or "0". It exits when its
# stdin closes, which also happens when the parent dies, so no worker outlives its parent.
_WORKER_READY = b"ready"
_WORKER_COMMAND = "from cot_transfer.domain.grading import serve_math_comparisons; serve_math_comparisons()"
_WORKER_STARTUP_SECONDS = 60.0
# A runaway comparison (huge numbers) would otherwise take the host's memory with it.
_WORKER_MEMORY_LIMIT_BYTES = 4 * 1024**3


def serve_math_comparisons() -> None:
    """Worker process main loop (see the protocol above); not for use in a serving process."""
    # Anything the libraries print must not corrupt the protocol on stdout: keep a private
    # handle on it and point file descriptor 1 at stderr.
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (_WORKER_MEMORY_LIMIT_BYTES, _WORKER_MEMORY_LIMIT_BYTES))
    protocol.write(_WORKER_READY + b"\n")
    for line in sys.stdin.buffer:
        try:
            extracted, reference = json.loads(line)
            equivalent = compare_math_in_process(str(extracted), str(reference))
        except (Exception, TimeoutException):
            equivalent = False
        protocol.write(b"1\n" if equivalent else b"0\n")


class _WorkerUnavailableError(Exception):
    pass


class _ComparisonWorker:
    """One worker process; used by one thread at a time (the pool hands it out)."""

    def __init__(self) -> None:
        # The worker must import this package exactly as the parent does, however the parent
        # found it (installed, PYTHONPATH, or a test runner's path changes).
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_COMMAND],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=environment,
                bufsize=0,
            )
        except OSError as error:
            raise _WorkerUnavailableError(str(error)) from error
        self._pending = b""
        if self._read_line(_WORKER_STARTUP_SECONDS) != _WORKER_READY:
            self.close()
            raise _WorkerUnavailableError("the math-verify worker did not start")

    def compare(self, extracted: str, reference: str, timeout_seconds: float) -> bool | None:
        """The worker's verdict, or None when it gave none in time (or died)."""
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps([extracted, reference]).encode() + b"\n")
        except OSError:
            return None
        line = self._read_line(timeout_seconds)
        return None if line is None else line == b"1"

    def _read_line(self, timeout_seconds: float) -> bytes | None:
        assert self._process.stdout is not None
        descriptor = self._process.stdout.fileno()
        deadline = time.monotonic() + timeout_seconds
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([descriptor], [], [], remaining)[0]:
                return None
            chunk = os.read(descriptor, 4096)
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.strip()

    def close(self) -> None:
        self._process.kill()
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()


class _ComparisonPool:
    """Worker processes shared by all threads; a comparison that overruns its time is killed
    with its worker, and a fresh worker is started for the next one.

    Workers start on first use. When none can start (no ``python`` to run, a sandbox), the
    pool compares in the calling thread instead, with only the expression guards.
    """

    def __init__(self, size: int) -> None:
        self.owner_pid = os.getpid()
        # Last in, first out: one thread at a time keeps reusing one warm worker.
        self._idle: queue.LifoQueue[_ComparisonWorker | None] = queue.LifoQueue()
        for _ in range(size):
            self._idle.put(None)
        self._in_process = False

    def compare(self, extracted: str, reference: str, timeout_seconds: float) -> bool:
        if self._in_process:
            return compare_math_in_process(extracted, reference)
        worker = self._idle.get()
        try:
            if worker is None:
                worker = _ComparisonWorker()
            verdict = worker.compare(extracted, reference, timeout_seconds)
            if verdict is None:
                worker.close()
                worker = None
                _logger.warning("math-verify gave no verdict within %.1f s; graded not correct", timeout_seconds)
                return False
            return verdict
        except _WorkerUnavailableError as error:
            self._in_process = True
            _logger.warning("math-verify workers unavailable (%s); comparing in-process without a time limit", error)
            return compare_math_in_process(extracted, reference)
        finally:
            self._idle.put(worker)


_pool: _ComparisonPool | None = None
_pool_lock = threading.Lock()


def _comparison_pool() -> _ComparisonPool:
    global _pool
    with _pool_lock:
        # A forked child must not share its parent's worker pipes.
        if _pool is None or _pool.owner_pid != os.getpid():
            _pool = _ComparisonPool(size=max(1, min(4, os.cpu_count() or 1)))
        return _pool


def math_answers_equivalent(
    extracted: str, reference: str, timeout_seconds: float = DEFAULT_MATH_TIMEOUT_SECONDS
) -> bool:
    """Whether ``extracted`` equals ``reference`` mathematically; never raises.

    The comparison runs in a worker process and counts as not equivalent when it takes
    longer than ``timeout_seconds``. Safe to call from any thread; in async code, call it
    through ``asyncio.to_thread`` since it blocks for the comparison's duration.
    """
    return _comparison_pool().compare(extracted, reference, timeout_seconds)


class MathGrader:
    r"""Extracts the last ``\boxed{}``, else the last final-answer statement; correct when
    math-verify finds it equivalent to the reference within ``timeout_seconds``."""

    name = "math"

    def __init__(self, timeout_seconds: float = DEFAULT_MATH_TIMEOUT_SECONDS) -> None:
        if not timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        self.timeout_seconds = timeout_seconds

    def extract(self, text: str) -> str | None:
        boxed = last_boxed_content(text)
        if boxed:
            return boxed
        return final_answer_statement(text)

    def is_correct(self, extracted: str | None, reference: str) -> bool:
        if extracted is None or not extracted.strip():
            return False
        return math_answers_equivalent(extracted, reference, self.timeout_seconds)


CHOICE_LETTERS = "ABCDE"
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textrm)\s*\{([^{}]*)\}")
_CHOICE_ALONE = re.compile(rf"\(?\s*([{CHOICE_LETTERS}])\s*\)?", re.IGNORECASE)
_CHOICE_PARENTHESISED = re.compile(rf"[(\[]\s*([{CHOICE_LETTERS}])\s*[)\]]", re.IGNORECASE)
# Lower case is not accepted unparenthesised in running text: "the answer is a bit off".
_CHOICE_LEADING = re.compile(rf"([{CHOICE_LETTERS}])(?:[).:,]|\s|$)")
_CHOICE_WORD = re.compile(r"^(?:option|choice)\s+", re.IGNORECASE)


def _clean_choice_text(text: str) -> str:
    # Unlike in math answers, "*" is only ever emphasis around an option letter.
    cleaned = _LATEX_WRAPPER.sub(r"\1", text).replace("*", "")
    cleaned = _strip_math_delimiters(_MARKDOWN_EMPHASIS.sub("", cleaned)).strip().rstrip(".").strip()
    return _CHOICE_WORD.sub("", cleaned)


def choice_letter(text: str) -> str | None:
    """The option letter (upper case) that ``text`` starts with: "B", "(b)", "C) 42", "Option D"."""
    cleaned = _clean_choice_text(text)
    match = _CHOICE_ALONE.fullmatch(cleaned) or _CHOICE_PARENTHESISED.match(cleaned) or _CHOICE_LEADING.match(cleaned)
    return match.group(1).upper() if match else None


class ChoiceGrader:
    r"""Extracts one option letter A-E from ``\boxed{}``, else the last final-answer statement,
    else a last line holding only a letter; correct when it is the reference letter."""

    name = "choice"

    def extract(self, text: str) -> str | None:
        boxed = last_boxed_content(text)
        if boxed is not None:
            return choice_letter(boxed)
        statement = final_answer_statement(text)
        if statement is not None:
            return choice_letter(statement)
        last_line = next((line for line in reversed(text.splitlines()) if line.strip()), "")
        alone = _CHOICE_ALONE.fullmatch(_clean_choice_text(last_line))
        return alone.group(1).upper() if alone else None

    def is_correct(self, extracted: str | None, reference: str) -> bool:
        if extracted is None:
            return False
        extracted_letter = choice_letter(extracted)
        return extracted_letter is not None and extracted_letter == choice_letter(reference)


_GRADER_FACTORIES: dict[str, Callable[[], Grader]] = {
    "exact": ExactGrader,
    "math": MathGrader,
    "choice": ChoiceGrader,
}

DEFAULT_GRADER = "exact"


def grader_names() -> list[str]:
    return sorted(_GRADER_FACTORIES)


def get_grader(name: str) -> Grader:
    factory = _GRADER_FACTORIES.get(name or DEFAULT_GRADER)
    if factory is None:
        raise NotFoundError(f"grader {name!r} is unknown; known graders: {', '.join(grader_names())}")
    return factory()
