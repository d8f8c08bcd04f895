"""The vocabulary of capabilities: the names of the actions and side effects a plan may need.

Every name an agent is allowed or forbidden, and every action or side effect a plan names, is
compared only after `normalize`: Unicode NFKC, case-folded, whitespace and invisible (format)
characters removed. So `SSH`, `" ssh"` and `ssh` followed by a zero-width space are all `ssh`.
A normalised name must look like a vocabulary word (`CANONICAL_NAME`) and be one of the known
words; anything else is unknown, and unknown never passes.

The built-in vocabulary is the seed's: the tier-0 observer's allowed side effects and the
forbidden actions that apply to every agent. Operators extend it explicitly (recorded).
"""

from __future__ import annotations

import re
import unicodedata

# The seed's tier-0 observer metadata (LLM Planner agent): what it may do...
SEED_ALLOWED_SIDE_EFFECTS: tuple[str, ...] = (
    "read_docs",
    "read_inventory",
    "read_logs",
    "generate_plan",
    "llm_inference",
)
# ...and what no agent may do unless an operator lifts the item for that agent.
SEED_FORBIDDEN_ACTIONS: tuple[str, ...] = (
    "ssh",
    "create_vm",
    "modify_vm",
    "delete_vm",
    "run_ansible",
    "run_terraform",
    "write_secrets",
    "execute_shell",
    "modify_files",
)
BUILTIN_VOCABULARY: frozenset[str] = frozenset(SEED_ALLOWED_SIDE_EFFECTS + SEED_FORBIDDEN_ACTIONS)

CANONICAL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SHOWN_CHARS = 64


def normalize(name: str) -> str:
    """The comparable form of a name: NFKC, case-folded, no whitespace and no format characters."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(c for c in folded if not c.isspace() and unicodedata.category(c) != "Cf")


def declared_word(name: str) -> str | None:
    """An operator's name for a capability (in an agent's lists or a vocabulary addition): NFKC and
    case-folded, outer whitespace dropped; None unless that is a word. Stricter than `normalize`:
    an operator's `drop table` or a hidden zero-width character is refused, not read as a word."""
    word = unicodedata.normalize("NFKC", name).strip().casefold()
    return word if is_canonical(word) else None


def is_canonical(name: str) -> bool:
    """Whether a normalised name has the shape of a vocabulary word (lower snake case)."""
    return CANONICAL_NAME.match(name) is not None


def shown(name: str) -> str:
    """A name as it may appear in a flag, a note or a log line: printable ASCII letters, digits and
    `_-./ ` kept, everything else escaped (`\\u200b`), at most 64 characters of the original."""
    out = []
    for char in name[:_SHOWN_CHARS]:
        if char.isascii() and (char.isalnum() or char in "_-./ "):
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return "".join(out) + ("..." if len(name) > _SHOWN_CHARS else "")
