"""Semantic versions and ranges resolve as npm does: each range form, partial versions, pre-releases."""

from __future__ import annotations

import pytest

from governance.semver import SemverError, max_satisfying, parse_range, parse_version

VERSIONS = [
    "0.0.3", "0.0.4", "0.2.3", "0.2.9", "0.3.0", "1.0.0", "1.2.0", "1.2.3", "1.2.9", "1.3.0-rc.1",
    "1.3.0", "1.9.9", "2.0.0-alpha", "2.0.0-beta.2", "2.0.0-beta.10", "2.0.0", "2.1.0", "3.0.0-rc.1",
]  # fmt: skip

# (range, the highest version it selects among VERSIONS, or None)
CASES = [
    ("1.2.3", "1.2.3"),  # exact
    ("=1.2.3", "1.2.3"),
    ("v1.2.3", "1.2.3"),
    ("^1.2", "1.9.9"),  # caret: same major
    ("^1.2.3", "1.9.9"),
    ("^1", "1.9.9"),
    ("^0.2.3", "0.2.9"),  # caret below 1.0: same minor
    ("^0.0.3", "0.0.3"),  # caret on 0.0.x: that patch only
    ("^0.0", "0.0.4"),
    ("^0", "0.3.0"),
    ("~1.2.3", "1.2.9"),  # tilde: same minor
    ("~1.2", "1.2.9"),
    ("~1", "1.9.9"),
    (">=1.0 <2", "1.9.9"),  # comparators
    (">=1.0, <2", "1.9.9"),  # Cargo's comma
    (">= 1.0 < 2", "1.9.9"),
    (">1.2.3 <1.3", "1.2.9"),
    (">1.2", "2.1.0"),  # >1.2 means >=1.3.0
    ("<=1.2", "1.2.9"),  # <=1.2 means <1.3.0
    ("<1.2", "1.0.0"),
    ("1.x", "1.9.9"),  # x-ranges
    ("1.2.x", "1.2.9"),
    ("1.2", "1.2.9"),
    ("*", "2.1.0"),
    ("1.0.0 - 1.2", "1.2.9"),  # hyphen
    ("^0.2 || ^2", "2.1.0"),  # union
    ("^3", None),  # only a pre-release of 3
    ("^4", None),
    # pre-releases: only when the range names one of the same major.minor.patch
    ("^1.3.0-rc.0", "1.9.9"),
    ("~1.3.0-rc.0", "1.3.0"),
    (">=1.3.0-rc.0 <1.3.0", "1.3.0-rc.1"),
    (">=2.0.0-beta.1 <2.0.0", "2.0.0-beta.10"),  # numeric identifiers compare as numbers
    ("2.0.0-beta.2", "2.0.0-beta.2"),
    ("^2.0.0-alpha", "2.1.0"),
    (">=2.0.0-beta.3 <2.1", "2.0.0"),
    ("^3.0.0-rc.0", "3.0.0-rc.1"),
    ("<2", "1.9.9"),  # never 2.0.0-alpha
    ("~1.2 || >=3.0.0-rc.1", "3.0.0-rc.1"),
]


@pytest.mark.parametrize(("spec", "expected"), CASES)
def test_range_selects(spec: str, expected: str | None) -> None:
    found = max_satisfying([parse_version(v) for v in VERSIONS], parse_range(spec))
    assert (None if found is None else str(found)) == expected


PRECEDENCE = [
    "1.0.0-0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
    "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0",
]  # fmt: skip


def test_precedence_as_semver_defines_it() -> None:
    parsed = [parse_version(v) for v in PRECEDENCE]
    assert [str(v) for v in sorted(reversed(parsed), key=lambda v: v.key)] == PRECEDENCE
    assert parse_version("1.0.0+build.5").key == parse_version("1.0.0").key


@pytest.mark.parametrize("bad", ["1", "1.2", "01.2.3", "1.2.3-", "1.2.3-01", "a.b.c", ""])
def test_versions_that_do_not_parse(bad: str) -> None:
    with pytest.raises(SemverError):
        parse_version(bad)


@pytest.mark.parametrize("bad", ["", "^", ">=abc", "1.2.3.4", "^1 ||"])
def test_ranges_that_do_not_parse(bad: str) -> None:
    with pytest.raises(SemverError):
        parse_range(bad)


def test_include_prerelease_lifts_the_rule() -> None:
    spec = parse_range("^1")
    assert not spec.matches(parse_version("1.3.0-rc.1"))
    assert spec.matches(parse_version("1.3.0-rc.1"), include_prerelease=True)
