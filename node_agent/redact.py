"""One filter that removes secrets from every line node_agent writes.

It knows secrets two ways: by shape (storage keys in connection strings, SAS
signatures, bearer tokens) and by value (the entitlement token, keys read from
the environment), registered once per process by the phase that reads them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"

_PATTERNS = [
    re.compile(r"(?i)(AccountKey=)[^;\s'\"]+"),
    re.compile(r"(?i)(SharedAccessSignature=)[^;\s'\"]+"),
    re.compile(r"(?i)([?&]sig=)[^&\s'\"]+"),
    re.compile(r"(?i)(Authorization:\s*(?:Bearer|SharedKey)\s+)\S+"),
    re.compile(r"(?i)(password=)[^\s,'\"]+"),
    re.compile(r"(?i)(/pass:)\S+"),
]
# A line holds a secret-shaped substring only if it holds one of these (lower-cased):
# checking them first keeps the filter cheap on the bulk of renderer output.
_TRIGGERS = (
    "accountkey=",
    "sharedaccesssignature=",
    "sig=",
    "authorization:",
    "password=",
    "/pass:",
)


class Redactor:
    """Replaces known secret values and secret-shaped substrings with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._ordered: list[str] = []  # longest first, so a secret's prefix is not masked alone
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        # Very short values would mask ordinary words; real secrets are long.
        if secret and len(secret) >= 6:
            self._secrets.add(secret)
            self._ordered = sorted(self._secrets, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
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
