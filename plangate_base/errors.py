"""The root of plangate's typed errors: every package's errors derive from PlangateError.

`except PlangateError` catches anything plangate raises on purpose, whichever package raised it
(worker/errors.py, ledger/errors.py, governance/registry.py build their small hierarchies on it).
"""

from __future__ import annotations


class PlangateError(Exception):
    """Base of every error plangate raises on purpose."""
