"""Signed notes against the published example of golang.org/x/mod/sumdb/note (note.go's package docs):
its private key, verifier key, text and signed note, reproduced byte for byte; and tlog checkpoints."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import signed_note
from ledger.signed_note import Checkpoint, NoteError

SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
SIGNATURE = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
NOTE = f"{TEXT}\n\u2014 PeterNeumann {SIGNATURE}\n"
# transparency-dev/formats note tests: a verifier key whose base64 holds a '+'
PLUS_KEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"


def peter() -> Ed25519PrivateKey:
    seed = base64.b64decode(SKEY.split("+", 4)[-1])  # PRIVATE+KEY+name+hash+key
    assert seed[:1] == b"\x01"
    return Ed25519PrivateKey.from_private_bytes(seed[1:])


def test_the_published_example_byte_for_byte() -> None:
    key = peter()
    assert signed_note.verifier_key("PeterNeumann", key.public_key()) == VKEY
    assert signed_note.sign(TEXT, "PeterNeumann", key) == NOTE
    name, public = signed_note.parse_verifier_key(VKEY)
    assert name == "PeterNeumann" and signed_note.open_note(NOTE, name, public) == TEXT


def test_a_verifier_key_with_a_plus_in_its_base64() -> None:
    name, _key = signed_note.parse_verifier_key(PLUS_KEY)
    assert name == "TEST"
    with pytest.raises(NoteError):
        signed_note.parse_verifier_key(PLUS_KEY.replace("7997405c", "7997405d"))


def test_tampered_notes_and_other_keys_are_refused() -> None:
    name, public = signed_note.parse_verifier_key(VKEY)
    with pytest.raises(NoteError):
        signed_note.open_note(NOTE.replace("cryptography", "cryptographx"), name, public)
    with pytest.raises(NoteError):
        signed_note.open_note(NOTE, name, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(NoteError):
        signed_note.open_note(TEXT, name, public)  # no signatures


def test_a_checkpoint_round_trips_and_needs_its_origin_as_key_name() -> None:
    key = Ed25519PrivateKey.generate()
    checkpoint = Checkpoint("example.com/log", 42, bytes(range(32)))
    assert checkpoint.body() == f"example.com/log\n42\n{base64.b64encode(bytes(range(32))).decode()}\n"
    note = signed_note.sign(checkpoint.body(), "example.com/log", key)
    assert signed_note.verified_checkpoint(note, "example.com/log", key.public_key()) == checkpoint
    other = signed_note.sign(checkpoint.body(), "other", key)
    with pytest.raises(NoteError):
        signed_note.verified_checkpoint(other, "other", key.public_key())  # origin is not the key's name
    for bad in ("log\n042\nAAAA\n", "log\n1\nAAAA\n", "\n1\n" + "A" * 44 + "\n"):
        with pytest.raises(NoteError):
            signed_note.parse_checkpoint(bad)
