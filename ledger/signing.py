"""Ed25519 keys that sign the chain head: the writer holds the private key, a verifier the public one.

A hash chain alone can be recomputed by whoever can write the file; a signed anchor cannot be forged
without the private key, so a rewritten history no longer matches the anchors exported earlier.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import signed_note
from ledger.errors import SigningKeyError
from plangate_base import codec


def default_key_path(ledger_path: str | os.PathLike[str]) -> Path:
    """LEDGER_PATH + '.key': where the demo keeps its key (a deployment keeps it apart: Settings
    .signing_key_path)."""
    return Path(f"{os.fspath(ledger_path)}.key")


def public_key_path(key_path: str | os.PathLike[str]) -> Path:
    """The public half of a signing key, written beside it (KEY + '.pub')."""
    return Path(f"{os.fspath(key_path)}.pub")


def load_or_create_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The private key at `path` (PEM, PKCS#8); created with mode 0600, and its .pub beside it, if absent.

    Two writers starting at once (workers on one host) never see half a key: the key is written whole to
    a file of its own, then linked to `path` (which fails if `path` exists); the loser reads the
    winner's key."""
    file = Path(path)
    if file.exists():
        return load_private_key(file)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".new")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(partial, file)
        except FileExistsError:
            return load_private_key(file)  # another writer created it first
    finally:
        os.unlink(partial)
    public = public_key_path(file)
    staged = public.with_name(f".{public.name}.{os.getpid()}.new")
    staged.write_bytes(public_pem(key.public_key()))
    os.replace(staged, public)
    return key


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read an Ed25519 private key (PEM)."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"cannot read the signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Read an Ed25519 public key (PEM), or derive it from a private key file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the public key {path}: {exc}") from exc
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        key = load_private_key(path).public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is not an Ed25519 public key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    """The public key as PEM (SubjectPublicKeyInfo)."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of SHA-256 over its raw bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signed_message(fields: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the fields as compact sorted-key JSON."""
    return codec.canonical_bytes(fields)


def sign(key: Ed25519PrivateKey, fields: dict[str, Any]) -> str:
    """Sign `fields`; the signature as base64 text."""
    return base64.b64encode(key.sign(signed_message(fields))).decode("ascii")


def signature_ok(key: Ed25519PublicKey, fields: dict[str, Any], signature: str) -> bool:
    """Whether `signature` is this key's signature over `fields`."""
    try:
        key.verify(base64.b64decode(signature), signed_message(fields))
    except (InvalidSignature, ValueError):
        return False
    return True


def load_trusted_key(path: str | os.PathLike[str]) -> tuple[Ed25519PublicKey, str | None]:
    """The public key an operator or auditor trusts, and its name: a PEM public key (no name), or a C2SP
    verifier key `name+hash+key` on the file's first line (checkpoints must then be of that origin)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"cannot read the trusted key {path}: {exc}") from exc
    if "-----BEGIN" in text:
        return load_public_key(path), None
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    try:
        name, key = signed_note.parse_verifier_key(line)
    except signed_note.NoteError as exc:
        raise SigningKeyError(f"{path} is neither a PEM public key nor a verifier key: {exc}") from exc
    return key, name
