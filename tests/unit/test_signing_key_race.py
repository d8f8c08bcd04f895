"""Two ledger writers starting at once on one host create the signing key once, and neither reads half of
it (the bulk-cancel test's two workers hit a half-written key: `MalformedFraming`)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ledger.signing import load_or_create_key, load_public_key, public_key_path
from tests.races import at_once


def _raw(key: object) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)  # type: ignore[attr-defined]


def _race(path: Path, writers: int) -> tuple[list[object], list[BaseException]]:
    """`writers` threads calling load_or_create_key(path) at the same moment: their keys and errors."""
    return at_once(lambda: load_or_create_key(path), writers)


def test_writers_starting_at_once_all_get_the_one_key(tmp_path: Path) -> None:
    for round_ in range(20):
        path = tmp_path / f"round-{round_}" / "ledger.key"
        keys, errors = _race(path, 8)
        assert errors == []
        assert len({_raw(k) for k in keys}) == 1  # one key, the winner's, for every writer
        on_disk = load_public_key(public_key_path(path))
        assert on_disk.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == _raw(
            keys[0]
        )
        assert sorted(p.name for p in path.parent.iterdir()) == [
            "ledger.key",
            "ledger.key.pub",
        ]  # no leftovers
        assert path.stat().st_mode & 0o777 == 0o600
