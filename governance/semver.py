"""Semantic versions and the ranges that select them, as npm (and Cargo's caret/tilde) resolve them.

Pure functions over text. A range is one or more comparator sets joined by `||`; a set is
space-separated comparators (`>=1.0 <2`), a caret (`^1.2`), a tilde (`~1.2.3`), an x-range (`1.x`,
`1.2`, `*`), a hyphen range (`1.2 - 2.3.4`) or an exact version (`1.2.3`, `=1.2.3`). A pre-release
(`2.0.0-beta.1`) satisfies a range only when a comparator of the same set names a pre-release of the
same major.minor.patch (npm's rule), so `^1` never picks `1.3.0-rc.1` but `^1.3.0-rc.0` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from plangate_base.errors import PlangateError

_VERSION = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_PARTIAL = re.compile(
    r"^v?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*]))?(?:\.(?P<patch>\d+|[xX*]))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)
_OPERATOR = re.compile(r"^(\^|~|>=|<=|>|<|=)?\s*(.+)$")
_WILD = {"x", "X", "*"}


class SemverError(PlangateError):
    """A version or a range that does not parse."""


def _pre_key(pre: tuple[str, ...]) -> tuple[tuple[int, int | str], ...]:
    # Numeric identifiers sort numerically and before alphanumeric ones.
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre)


@dataclass(frozen=True, slots=True, order=False)
class Version:
    """A parsed semantic version (build metadata is kept but never compared)."""

    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()
    build: str = field(default="", compare=False)

    @property
    def key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        """The precedence order: a pre-release sorts before its release."""
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, _pre_key(self.pre))

    @property
    def core(self) -> tuple[int, int, int]:
        """major, minor, patch."""
        return (self.major, self.minor, self.patch)

    def __lt__(self, other: Version) -> bool:
        return self.key < other.key

    def __le__(self, other: Version) -> bool:
        return self.key <= other.key

    def __gt__(self, other: Version) -> bool:
        return self.key > other.key

    def __ge__(self, other: Version) -> bool:
        return self.key >= other.key

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + ".".join(self.pre)
        return text + (f"+{self.build}" if self.build else "")


def parse_version(text: str) -> Version:
    """A full version `MAJOR.MINOR.PATCH[-PRE][+BUILD]`; SemverError otherwise."""
    match = _VERSION.match(text.strip())
    if match is None:
        raise SemverError(f"not a semantic version: {text!r} (e.g. 1.2.3 or 2.0.0-beta.1)")
    pre = tuple(match[4].split(".")) if match[4] else ()
    return Version(int(match[1]), int(match[2]), int(match[3]), pre, match[5] or "")


def is_exact(text: str) -> bool:
    """Whether a range names exactly one version (`1.2.3` or `=1.2.3`)."""
    candidate = text.strip().removeprefix("=").strip()
    return _VERSION.match(candidate) is not None


@dataclass(frozen=True, slots=True)
class Comparator:
    """One bound: `op` is one of < <= > >= = applied to `version`."""

    op: str
    version: Version
    implicit: bool = False  # an upper bound a caret, tilde or x-range implies (never admits a pre-release)

    def test(self, v: Version) -> bool:
        """Whether `v` satisfies this bound (pre-release rule aside)."""
        a, b = v.key, self.version.key
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "=": a == b}[self.op]


_ZERO_PRE = ("0",)  # `<2.0.0-0`: below every pre-release of 2.0.0, as npm writes upper bounds


def _bump(parts: list[int], index: int) -> Comparator:
    """`<` the next version past parts[:index + 1], below its pre-releases too."""
    raised = [*parts[:index], parts[index] + 1] + [0] * (2 - index)
    return Comparator("<", Version(*raised, pre=_ZERO_PRE), implicit=True)


def _partial(text: str) -> tuple[list[int], tuple[str, ...]]:
    """The given numeric parts of a partial version (`1.2` -> [1, 2]) and its pre-release."""
    match = _PARTIAL.match(text)
    if match is None:
        raise SemverError(f"not a version in a range: {text!r}")
    parts: list[int] = []
    for name in ("major", "minor", "patch"):
        value = match[name]
        if value is None or value in _WILD:
            break
        parts.append(int(value))
    pre = tuple(match["pre"].split(".")) if match["pre"] and len(parts) == 3 else ()
    return parts, pre


def _expand(op: str, text: str) -> list[Comparator]:
    """One range token (`^1.2`, `>=1`, `1.x`) as its bounds."""
    parts, pre = _partial(text)
    if not parts:  # `*`, `x`, `>=*`
        return [] if op not in ("<", ">") else [Comparator("<", Version(0, 0, 0, _ZERO_PRE), implicit=True)]
    full = Version(*(parts + [0] * (3 - len(parts))), pre=pre)  # type: ignore[misc]
    n = len(parts)
    if op == "^":
        # The left-most non-zero part stays; a range of zeros keeps what was given.
        first = next((i for i, p in enumerate(parts) if p != 0), n - 1)
        upper = _bump(parts + [0] * (3 - n), min(first, n - 1))
        return [Comparator(">=", full), upper]
    if op == "~":
        upper = _bump(parts + [0] * (3 - n), 0 if n == 1 else 1)
        return [Comparator(">=", full), upper]
    if n == 3:
        return [Comparator(op or "=", full)]
    padded = parts + [0] * (3 - n)
    upper = _bump(padded, n - 1)  # the next version past the given prefix
    if op in ("", "="):
        return [Comparator(">=", full), upper]
    if op == ">":
        return [Comparator(">=", Version(*upper.version.core))]
    if op == "<=":
        return [upper]
    if op == ">=":
        return [Comparator(">=", full)]
    # `<1.2`: below 1.2.0 and its pre-releases
    return [Comparator("<", Version(*padded, pre=_ZERO_PRE), implicit=True)]


def _tokens(text: str) -> list[str]:
    # `>= 1.2` is one comparator: glue an operator to the version after it.
    raw = text.replace(",", " ").split()  # Cargo separates comparators with commas
    out: list[str] = []
    for token in raw:
        if out and out[-1] in ("^", "~", ">=", "<=", ">", "<", "="):
            out[-1] += token
        else:
            out.append(token)
    return out


@dataclass(frozen=True, slots=True)
class Range:
    """A parsed range: any of its comparator sets may match."""

    text: str
    sets: tuple[tuple[Comparator, ...], ...]

    def matches(self, v: Version, include_prerelease: bool = False) -> bool:
        """Whether `v` is in the range (pre-releases only as npm allows them, unless asked)."""
        return any(_set_matches(s, v, include_prerelease) for s in self.sets)


def _set_matches(bounds: tuple[Comparator, ...], v: Version, include_prerelease: bool) -> bool:
    if not all(c.test(v) for c in bounds):
        return False
    if not v.pre or include_prerelease:
        return True
    return any(c.version.pre and not c.implicit and c.version.core == v.core for c in bounds)


def parse_range(text: str) -> Range:
    """A range in npm's syntax (see the module docstring); SemverError when it does not parse."""
    source = text.strip()
    if not source:
        raise SemverError("an empty version range (use `*` for any version)")
    sets: list[tuple[Comparator, ...]] = []
    for alternative in source.split("||"):
        alt = alternative.strip()
        if not alt:
            raise SemverError(f"an empty alternative in {text!r} (use `*` for any version)")
        hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", alt)
        if hyphen:
            bounds = _expand(">=", hyphen[1]) + _expand("<=", hyphen[2])
        else:
            bounds = []
            for token in _tokens(alt):
                match = _OPERATOR.match(token)
                if match is None:
                    raise SemverError(f"not a version range: {text!r}")
                bounds += _expand(match[1] or "", match[2])
        sets.append(tuple(bounds))
    return Range(source, tuple(sets))


def max_satisfying(
    versions: Iterable[Version], spec: Range, include_prerelease: bool = False
) -> Version | None:
    """The highest version the range selects, or None."""
    found = [v for v in versions if spec.matches(v, include_prerelease)]
    return max(found, key=lambda v: v.key) if found else None


def latest_of_major(versions: Iterable[Version], major: int) -> Version | None:
    """The highest version (pre-releases included) of one major line."""
    line = [v for v in versions if v.major == major]
    return max(line, key=lambda v: v.key) if line else None
