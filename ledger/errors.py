"""The typed errors of the ledger package."""

from __future__ import annotations

from plangate_base.errors import PlangateError


class LedgerError(PlangateError):
    """Base of every error the ledger raises on purpose."""


class LedgerNotFound(LedgerError):
    """The ledger file does not exist (nothing has been recorded at this path yet)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no ledger at {path}")
        self.path = path


class SchemaTooNew(LedgerError):
    """The file was written by a newer plangate whose schema this version does not know."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(f"ledger schema version {found} is newer than this plangate knows ({known})")
        self.found = found
        self.known = known


class MigrationError(LedgerError):
    """The shipped migrations are inconsistent, or a migration target does not exist."""


class SigningKeyError(LedgerError):
    """The anchor signing key (or the public key to verify with) is missing or unreadable."""


class CompactionError(LedgerError):
    """A compaction could not proceed (nothing to archive, the chain is broken, the archive exists)."""


class LedgerDiverged(LedgerError):
    """The file's chain head is not the head this writer wrote: rows were added (or removed) behind its back.

    The writer refuses to extend or sign such a chain; `plangate ledger verify` shows where it diverged."""

    def __init__(self, expected: tuple[int, str], found: tuple[int, str]) -> None:
        super().__init__(
            f"the ledger file's head is row {found[0]} {found[1][:16]}..., this writer last wrote row "
            f"{expected[0]} {expected[1][:16]}...: the file was changed behind the writer; not writing"
        )
        self.expected = expected
        self.found = found
