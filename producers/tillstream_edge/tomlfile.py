"""The edge's hand-edited TOML files (till tokens, serial devices): read the same way."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def read_toml(path: Path, what: str, error: type[ValueError]) -> dict[str, Any]:
    """The tables of the TOML file at ``path``; raises ``error`` naming the file and what is
    wrong with it (``what`` says which file it is: "tokens file", "devices file")."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
