"""C2SP signed notes and tlog checkpoints: the text format transparency logs sign their tree heads in.

A checkpoint's body is three lines — the log's origin, the tree size in decimal, the root hash in base64 —
then a blank line and one signature line per signer: an em dash, the key name, and base64 of the key's
4-byte hash followed by its Ed25519 signature over the body (https://c2sp.org/signed-note,
https://c2sp.org/tlog-checkpoint). A verifier key is written `name+hash+base64(0x01 || public key)`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import LedgerError

ED25519 = b"\x01"
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space


class NoteError(LedgerError):
    """A note or checkpoint is malformed, or carries no valid signature of the trusted key."""


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_hash(name: str, key: Ed25519PublicKey) -> bytes:
    """The 4-byte key hash: the first bytes of SHA-256(name || 0x0A || 0x01 || public key)."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + _raw(key)).digest()[:4]


def verifier_key(name: str, key: Ed25519PublicKey) -> str:
    """The key as a C2SP verifier key string, which an auditor can keep as the trusted key."""
    check_name(name)
    encoded = base64.b64encode(ED25519 + _raw(key)).decode()
    return f"{name}+{key_hash(name, key).hex()}+{encoded}"


def parse_verifier_key(text: str) -> tuple[str, Ed25519PublicKey]:
    """(name, public key) of a verifier key string; NoteError if it is not one or its hash is wrong."""
    parts = text.strip().split("+", 2)  # (base64 may hold "+" too)
    if len(parts) != 3:
        raise NoteError("a verifier key is NAME+HASH+KEY")
    name, hash_hex, encoded = parts
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise NoteError("the verifier key is not base64") from exc
    if len(raw) != 33 or raw[:1] != ED25519:
        raise NoteError("not an Ed25519 verifier key")
    key = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_hash(name, key).hex() != hash_hex.lower():
        raise NoteError("the verifier key's hash does not match its name and key")
    return name, key


def check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError(f"a key name has no spaces and no '+': {name!r}")


def sign(body: str, name: str, key: Ed25519PrivateKey) -> str:
    """The signed note: `body` (ending in a newline), a blank line, this key's signature line."""
    check_name(name)
    if not body.endswith("\n") or "\n\n" in body:
        raise NoteError("a note's text ends with a newline and has no blank line")
    signature = key_hash(name, key.public_key()) + key.sign(body.encode())
    return f"{body}\n{SIGNATURE_PREFIX}{name} {base64.b64encode(signature).decode()}\n"


def open_note(note: str, name: str, key: Ed25519PublicKey) -> str:
    """The body of `note` if it carries a valid signature by (name, key); NoteError otherwise."""
    body, sep, signatures = note.partition("\n\n")
    if not sep:
        raise NoteError("not a signed note (no blank line before the signatures)")
    body += "\n"
    wanted = key_hash(name, key)
    for line in signatures.splitlines():
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"not a signature line: {line[:40]!r}")
        signer, _, encoded = line[len(SIGNATURE_PREFIX) :].rpartition(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        if signer != name or blob[:4] != wanted:
            continue
        try:
            key.verify(blob[4:], body.encode())
        except InvalidSignature:
            raise NoteError(f"the signature of {name} does not match the note") from None
        return body
    raise NoteError(f"the note is not signed by the trusted key {name}")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head as a tlog checkpoint body says it: origin, tree size, root hash."""

    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def parse_checkpoint(body: str) -> Checkpoint:
    """A checkpoint body (extension lines after the root are allowed and ignored)."""
    lines = body.split("\n")
    if len(lines) < 4 or not lines[0]:
        raise NoteError("a checkpoint has an origin, a size and a root hash line")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise NoteError(f"not a tree size: {size_text!r}")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error as exc:
        raise NoteError("the root hash is not base64") from exc
    if len(root) != 32:
        raise NoteError("the root hash is not 32 bytes")
    return Checkpoint(origin, int(size_text), root)


def unverified_checkpoint(note: str) -> Checkpoint:
    """The checkpoint a note claims, signature not checked (to find what to prove against)."""
    return parse_checkpoint(note.partition("\n\n")[0] + "\n")


def verified_checkpoint(note: str, name: str, key: Ed25519PublicKey) -> Checkpoint:
    """The checkpoint of a note signed by (name, key); its origin must be the key's name."""
    checkpoint = parse_checkpoint(open_note(note, name, key))
    if checkpoint.origin != name:
        raise NoteError(f"the checkpoint is of log {checkpoint.origin!r}, the key is {name!r}'s")
    return checkpoint
