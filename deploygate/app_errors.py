"""The app's own errors, as Sentry would group them, read from its container's output (pure).

Two kinds of lines make an error: a Python traceback (an uncaught exception, or one a logger
printed with ``exc_info``, as Django's ``django.request`` does for every 500) and an ERROR
line of ``django.request`` without one (a view that answered 5xx itself). An error's
signature is its exception type and the innermost frame of the app's own code, as Sentry
groups events: the line number is left out, so an unrelated edit above the frame does not
make an old error look new. Errors need the app to log to its output (stdout or stderr);
Django without a LOGGING setting mails them to the admins instead.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

TRACEBACK_HEADER = "Traceback (most recent call last):"
# The lines Python prints between the tracebacks of a chained exception.
_CHAINED = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
_FRAME = re.compile(r'^\s+File "(?P<path>[^"]+)", line \d+, in (?P<function>.+)$')
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")
_DJANGO_REQUEST_ERROR = re.compile(r"\bERROR\b.*\bdjango\.request\b:?\s*(?P<message>.*)$|\bdjango\.request\b.*\bERROR\b:?\s*(?P<m2>.*)$")
_LOGGED_ERROR = re.compile(r"\b(ERROR|CRITICAL|EXCEPTION)\b")
# Library code, not the app's: the innermost app frame is what the app can fix.
_LIBRARY_PATHS = ("site-packages/", "dist-packages/", "/lib/python3", "<frozen ")
_NUMBER = re.compile(r"(?<=/)\d+(?=/|$)")
# Credentials a message may carry whatever secrets were registered: a URL's password, key=value pairs.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+):[^@\s]+@", re.IGNORECASE)
_KEY_VALUE = re.compile(r"(?P<key>password|passwd|secret|token|api_key)(?P<sep>\s*[=:]\s*)(?P<value>['\"]?)[^\s'\",;]+", re.IGNORECASE)
SAMPLE_LINES = 40


@dataclass(frozen=True)
class AppError:
    """One error in the app's output: when, what (type), where (the innermost app frame), and the lines themselves."""

    ts: float
    type: str
    frame: str  # "path in function", or the request path of a django.request line without a traceback
    text: str

    @property
    def signature(self) -> str:
        return f"{self.type} at {self.frame}"

    @property
    def in_app(self) -> bool:
        """Its frame is the app's own code (not a library's, as a chained exception's first one often is)."""
        return _is_app_frame(self.frame.split(" in ")[0])


@dataclass(frozen=True)
class Signature:
    """One group of errors: its signature, how many each color showed, and one sample (secrets redacted)."""

    signature: str
    counts: dict[str, int]
    sample: str


def parse_timestamped(text: str) -> list[tuple[float, str]]:
    """Docker's ``timestamps=True`` output as (epoch seconds, line); a line without a timestamp keeps the previous one's."""
    lines: list[tuple[float, str]] = []
    last = 0.0
    for raw in text.splitlines():
        stamp, _, rest = raw.partition(" ")
        try:
            # Docker writes nanoseconds; datetime takes microseconds.
            whole, _, fraction = stamp.rstrip("Z").partition(".")
            last = datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00").timestamp()
        except ValueError:
            rest = raw
        lines.append((last, rest))
    return lines


def _is_app_frame(path: str) -> bool:
    return not any(part in path for part in _LIBRARY_PATHS)


def _traceback(lines: Sequence[tuple[float, str]], start: int) -> tuple[int, str | None, str]:
    """From a traceback header at ``start`` (and the chained ones after it): the index after it, its type (None:
    cut off before its exception's line, as at the end of a period) and frame."""
    index, frames, exc_type = start, [], None
    while index < len(lines):
        text = lines[index][1]
        if text.strip() == TRACEBACK_HEADER or text.endswith(TRACEBACK_HEADER):
            frames, index = [], index + 1  # a chained traceback: the last one raised is the error
            continue
        match = _FRAME.match(text)
        if match:
            frames.append((match["path"], match["function"].strip()))
        elif text.startswith((" ", "\t")) or not text.strip():
            pass  # a frame's source line, a caret line, or the blank lines around a chain's sentence
        elif text.strip() in _CHAINED:
            pass
        else:
            found = _EXCEPTION.match(text.strip())
            exc_type = found["type"] if found else text.strip()[:80]
            index += 1
            if not any(following.strip() in _CHAINED for _, following in lines[index : index + 2]):
                break
            continue
        index += 1
    app = [f for f in frames if _is_app_frame(f[0])] or frames
    frame = f"{app[-1][0]} in {app[-1][1]}" if app else "unknown"
    return index, exc_type, frame


def find_errors(lines: Sequence[tuple[float, str]]) -> list[AppError]:
    """The errors in timestamped output lines (``parse_timestamped``), in order."""
    errors: list[AppError] = []
    index = 0
    while index < len(lines):
        ts, text = lines[index]
        request_error = _DJANGO_REQUEST_ERROR.search(text)
        following = lines[index + 1][1] if index + 1 < len(lines) else ""
        if text.strip() == TRACEBACK_HEADER or text.endswith(TRACEBACK_HEADER):
            end, exc_type, frame = _traceback(lines, index)
            # The logger's line that printed the traceback says what failed (django.request: the request's path).
            context = lines[index - 1][1] if index and _LOGGED_ERROR.search(lines[index - 1][1]) else ""
            body = [context] if context else []
            if exc_type is not None:
                errors.append(AppError(ts, exc_type, frame, "\n".join(body + [t for _, t in lines[index:end]][:SAMPLE_LINES])))
            index = end
            continue
        if request_error and following.strip() != TRACEBACK_HEADER:
            message = (request_error["message"] or request_error["m2"] or "").strip()
            errors.append(AppError(ts, "django.request", _NUMBER.sub("<n>", message), text))
        index += 1
    return errors


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets, a URL's password, or the value of a password=/token=-like pair."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}:***@", text)
    return _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{m['value']}***", text)


def group(errors_by_color: Mapping[str, Sequence[AppError]], redact: Callable[[str], str] = redact_text) -> list[Signature]:
    """Signatures with their counts per color, most frequent first; each keeps its first sample, redacted."""
    counts: dict[str, Counter] = {}
    samples: dict[str, str] = {}
    for color, errors in errors_by_color.items():
        for error in errors:
            counts.setdefault(error.signature, Counter())[color] += 1
            samples.setdefault(error.signature, error.text)
    ordered = sorted(counts, key=lambda s: (-sum(counts[s].values()), s))
    return [Signature(s, dict(sorted(counts[s].items())), redact(samples[s])) for s in ordered]


def new_signatures(signatures: Iterable[Signature], color: str, baseline_color: str) -> list[Signature]:
    """The signatures ``color`` showed that ``baseline_color`` did not."""
    return [s for s in signatures if s.counts.get(color, 0) and not s.counts.get(baseline_color, 0)]
