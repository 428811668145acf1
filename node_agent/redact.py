"""One filter that removes secrets from every line node_agent writes.

It knows secrets two ways: by shape (storage keys in connection strings, SAS
signatures, bearer tokens) and by value (the entitlement token, keys read from
the environment), registered once per process by the phase that reads them.
Either way a secret is masked in every form it can take in text: raw, URL-encoded,
URL-decoded, JSON-escaped (`\\u0026sig=`, `\\/`), and (by value) the signature of a
SAS or the key of a connection string alone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

MASK = "***"

# What may stand before a SAS parameter name in text: a separator of the query string as
# written raw, URL-encoded (once or twice) or JSON-escaped, or the start of a word.
_BEFORE = (
    r"(?:^|(?<=[?&\s\"'(;,])|(?<=\\u0026)|(?<=\\u003f)|(?<=%26)|(?<=%3f)|(?<=%2526)|(?<=%253f))"
)
# '=' raw, URL-encoded (once or twice) or JSON-escaped
_EQ = r"(?:=|%3d|%253d|\\u003d)"
# A value ends at the next parameter (raw, encoded or JSON-escaped) or at a delimiter;
# a JSON-escaped '\/' is part of it.
_VALUE = r"(?:\\/|(?!%26|%2526|\\u0026|%3b)[^&;\s'\"\\<>])+"
_PATTERNS = [
    re.compile(rf"(?i)(AccountKey{_EQ}){_VALUE}"),
    re.compile(r"(?i)(SharedAccessSignature=)[^;\s'\"]+"),
    re.compile(rf"(?i)({_BEFORE}sig{_EQ}){_VALUE}"),
    re.compile(r"(?i)(\"sig\"\s*:\s*\")[^\"]+"),
    re.compile(r"(?i)(Authorization:\s*(?:Bearer|SharedKey)\s+)\S+"),
    re.compile(r"(?i)(password=)[^\s,'\"]+"),
    re.compile(r"(?i)(/pass:)\S+"),
]
# A line holds a secret-shaped substring only if it holds one of these (lower-cased):
# checking them first keeps the filter cheap on the bulk of renderer output.
_TRIGGERS = (
    "accountkey",
    "sharedaccesssignature=",
    "sig=",
    "sig%3d",
    "sig%253d",
    "sig\\u003d",
    '"sig"',
    "authorization:",
    "password=",
    "/pass:",
)
# The parts of a registered secret that are secrets on their own: an account key in a
# connection string, the SAS in one, the signature of a SAS.
_PARTS = [
    re.compile(r"(?i)AccountKey=([^;]+)"),
    re.compile(r"(?i)SharedAccessSignature=([^;]+)"),
    re.compile(r"(?i)(?:^|[?&])sig=([^&;]+)"),
]
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")
_MIN_LEN = 6  # very short values would mask ordinary words; real secrets are long


def _spellings(value: str) -> set[str]:
    """Every way `value` can stand in text: raw, URL-decoded, URL-encoded (once, twice, with
    or without '/'), JSON-escaped ('\\/', '\\u0026'), percent escapes in either case."""
    out: set[str] = set()
    for base in {value, unquote(value)}:
        for form in (base, quote(base, safe=""), quote(base, safe="/")):
            for esc in (form, form.replace("/", "\\/"), form.replace("&", "\\u0026")):
                out.add(esc)
                out.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), esc))
    return {s for s in out if len(s) >= _MIN_LEN}


class _Secret:
    """One registered value with all its spellings, and an anchor every spelling contains
    (the longest run of letters and digits of the decoded value) to skip it cheaply."""

    def __init__(self, value: str) -> None:
        self.spellings = sorted(_spellings(value), key=len, reverse=True)
        runs = _ALNUM_RUN.findall(unquote(value))
        self.anchor = max(runs, key=len) if runs else value

    @property
    def longest(self) -> int:
        return len(self.spellings[0]) if self.spellings else 0


class Redactor:
    """Replaces known secret values (in every spelling) and secret-shaped substrings with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._ordered: list[_Secret] = []  # longest first, so a secret's part is not masked alone
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < _MIN_LEN:
            return
        values = {secret, secret.strip().lstrip("?")}
        for v in list(values):
            for pattern in _PARTS:
                values.update(m.group(1) for m in pattern.finditer(unquote(v)))
                values.update(m.group(1) for m in pattern.finditer(v))
        new = {v for v in values if len(v) >= _MIN_LEN} - self._secrets
        if not new:
            return
        self._secrets |= new
        self._ordered = sorted(
            (_Secret(v) for v in self._secrets), key=lambda s: s.longest, reverse=True
        )

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret.anchor in text:
                for spelling in secret.spellings:
                    if spelling in text:
                        text = text.replace(spelling, MASK)
        folded = text.lower()
        if any(t in folded for t in _TRIGGERS):
            for pattern in _PATTERNS:
                text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text


class RedactingFilter(logging.Filter):
    """A logging filter that renders each record's message redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if record.exc_info:
            formatter = logging.Formatter()
            msg = msg + "\n" + formatter.formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = self.redactor(msg)
        record.args = None
        return True
