"""Our signer against the Standard Webhooks specification's published test vector, and the tests'
spec-written verifier against the same vector (so neither is checked only against the other)."""

from __future__ import annotations

from tests.webhook_receiver import verify
from worker.webhooks.signing import new_secret, signature, signed_headers

# The specification's vector (the reference libraries test against it).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signer_reproduces_the_specification_vector() -> None:
    assert signature(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED


def test_the_tests_verifier_accepts_the_vector_and_nothing_else() -> None:
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP), "webhook-signature": EXPECTED}

    assert verify(SECRET, headers, BODY, now=TIMESTAMP)
    assert verify(SECRET, {**headers, "webhook-signature": f"v1,bm9wZQ== {EXPECTED}"}, BODY, now=TIMESTAMP)
    assert not verify(SECRET, headers, BODY + b" ", now=TIMESTAMP)
    assert not verify(SECRET, {**headers, "webhook-id": "msg_other"}, BODY, now=TIMESTAMP)
    assert not verify(SECRET, headers, BODY, now=TIMESTAMP + 3600)  # outside the replay window


def test_a_new_secret_has_the_whsec_form_and_signs_what_the_verifier_accepts() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "msg_1", TIMESTAMP, b"{}")

    assert secret.startswith("whsec_") and secret != new_secret()
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == str(TIMESTAMP)
    assert verify(secret, headers, b"{}", now=TIMESTAMP)
