"""Ed25519 signatures on template files: a publisher signs a template's content hash with its private key
(`plangate templates sign`); publishing and installing verify it against the publisher keys an admin trusts.

A signature is a small JSON object kept beside the file (`FILE.sig`): the key id, the publisher's name,
the content hash it covers, and the signature over that hash. Editing the file after signing changes its
hash, so the signature no longer covers it: the template is tampered and refused.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from governance.templates import Template
from plangate_base import codec
from worker.errors import BadRequest


class SignatureRefused(BadRequest):
    """A template whose signature is missing, untrusted or does not cover its content (tampered)."""


class UntrustedSignature(SignatureRefused):
    """A template that is unsigned, or signed by a key no admin trusts (allowed only when asked)."""


@dataclass(frozen=True, slots=True)
class Signature:
    """A publisher's signature over one template's content hash."""

    key_id: str
    publisher: str
    hash: str
    signature: str

    def to_json(self) -> str:
        """The `.sig` file's text."""
        return codec.dumps(
            {
                "key_id": self.key_id,
                "publisher": self.publisher,
                "hash": self.hash,
                "signature": self.signature,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Signature:
        """Read a `.sig` file's text; SignatureRefused when it is not one."""
        try:
            data: Any = codec.loads(text)
            return cls(str(data["key_id"]), str(data["publisher"]), str(data["hash"]), str(data["signature"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SignatureRefused(f"not a template signature: {exc}") from None


def signature_path(template_file: str | os.PathLike[str]) -> Path:
    """Where a template file's signature lives: FILE + '.sig'."""
    return Path(f"{os.fspath(template_file)}.sig")


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """A short stable name of a public key: the first 16 hex digits of SHA-256 over its raw bytes."""
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def new_key_pair() -> tuple[str, str]:
    """A fresh publisher key: (private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return private, public_pem(key.public_key())


def public_pem(public: Ed25519PublicKey) -> str:
    """A public key as PEM text."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_private(pem: str) -> Ed25519PrivateKey:
    """A private Ed25519 key from PEM; SignatureRefused when it is not one."""
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureRefused(f"not a private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureRefused("the signing key must be an Ed25519 key")
    return key


def load_public(pem: str) -> Ed25519PublicKey:
    """A public Ed25519 key from PEM; SignatureRefused when it is not one."""
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError) as exc:
        raise SignatureRefused(f"not a public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureRefused("a publisher key must be an Ed25519 key")
    return key


def sign(template: Template, private_pem: str, publisher: str) -> Signature:
    """Sign a template's content hash."""
    key = load_private(private_pem)
    digest = template.content_hash()
    raw = key.sign(digest.encode("ascii"))
    return Signature(key_id(key.public_key()), publisher, digest, base64.b64encode(raw).decode("ascii"))


def verify(content_hash: str, signature: Signature, trusted: dict[str, tuple[str, str]]) -> str:
    """The trusted publisher who signed this content hash; SignatureRefused when the signature covers other
    content (tampered), does not verify, or comes from a key no admin trusts."""
    if signature.hash != content_hash:
        raise SignatureRefused(
            f"tampered: the signature covers {signature.hash}, the template's content is {content_hash}"
        )
    if signature.key_id not in trusted:
        raise UntrustedSignature(
            f"signed by key {signature.key_id} ({signature.publisher}), which no admin trusts "
            "(`plangate templates trust`)"
        )
    publisher, pem = trusted[signature.key_id]
    try:
        load_public(pem).verify(base64.b64decode(signature.signature), content_hash.encode("ascii"))
    except (InvalidSignature, ValueError) as exc:
        raise SignatureRefused(
            f"tampered: the signature does not verify with key {signature.key_id}"
        ) from exc
    return publisher
