"""What an acknowledgement (or a reopening) may say: one rule for the page's form, the API
and the command line.

A note is required, at most :data:`MAX_NOTE` characters, one paragraph of text (no control
characters), and never a card number (the card-number rule of every channel: an auditor
pasting a receipt's text must not make the audit trail hold a PAN). Who acknowledges is the
signed-in user or the token, never a field of the request: a ``by`` field is refused.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from tillstream.core.identifiers import CARD_NUMBER, text_problem

MAX_NOTE = 2000
"""Characters of a note."""
MAX_BODY = 16 * 1024
"""Bytes of an acknowledgement's request body (the API's JSON, the page's form)."""
FIELDS = frozenset({"note"})


class NoteError(ValueError):
    """The request's note (or fields) cannot be taken; ``field`` and ``kind`` say which and
    why (``kind`` ``card_number`` for a card number)."""

    def __init__(self, field: str, message: str, kind: str = "invalid") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.kind = kind


def note_of(body: Mapping[str, Any]) -> str:
    """The note of a request body; :class:`NoteError` naming what is wrong (never the value)."""
    unknown = sorted(set(body) - FIELDS)
    if "by" in unknown:
        raise NoteError(
            "by", "who acknowledges is who signed in (or the token's name), never a typed name"
        )
    if unknown:
        raise NoteError(unknown[0], "not a field of an acknowledgement (only note)")
    note = body.get("note")
    if not isinstance(note, str) or not note.strip():
        raise NoteError("note", "required: what the auditor found or did")
    if len(note) > MAX_NOTE:
        raise NoteError("note", f"at most {MAX_NOTE} characters")
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in note):
        raise NoteError("note", "control characters are not allowed")
    problem = text_problem(note)
    if problem is not None:
        kind = CARD_NUMBER if problem.kind == CARD_NUMBER else "invalid"
        raise NoteError("note", problem.message, kind)
    return note.strip()
