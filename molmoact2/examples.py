"""Example model outputs for one-click demos (the app's Output inspector, notebooks, tutorials).

Two kinds: `generated` (MolmoAct2 token output → `tokens.parse_generated`) and `spatial`
(Molmo2-ER text answers → `spatial.parse_answer`). Examples whose name starts with "malformed"
are broken on purpose, to show the error messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from molmoact2 import spatial, tokens

KINDS = ("generated", "spatial")


@dataclass(frozen=True)
class OutputExample:
    name: str
    kind: str  # generated | spatial
    text: str
    malformed: bool


def output_examples() -> list[OutputExample]:
    """All examples, generated outputs first, in a stable order."""
    out = []
    for kind, table in (("generated", tokens.examples()), ("spatial", spatial.examples())):
        for name, text in table.items():
            out.append(OutputExample(name, kind, text, name.startswith("malformed")))
    return out


_ROBOT_TOKEN = re.compile(r"<(?:depth|action)_(?:\d+|start|end)>")


def detect_kind(text: str) -> str:
    """`generated` if the text holds MolmoAct2 depth/action tokens, else `spatial`."""
    if not isinstance(text, str):
        raise TypeError(f"detect_kind: expected str, got {type(text).__name__}")
    return "generated" if _ROBOT_TOKEN.search(text) else "spatial"
