"""The SSE decoder of the LLM stream: the same events however the body is cut into chunks, and a cap
on one line (or one event) that holds whether the line arrives in one chunk or in many."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.errors import LLMAnswerTooLarge
from worker.llm.sse import SSEDecoder

ENDINGS = st.sampled_from([b"\n", b"\r\n", b"\r"])
VALUE = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A body of events (data lines, comments, other fields, any line ending) and the data it carries."""
    body, expected = b"", []
    for _ in range(draw(st.integers(0, 6))):
        values = draw(st.lists(VALUE, min_size=1, max_size=3))
        for value in values:
            if draw(st.booleans()):
                body += b": keep-alive" + draw(ENDINGS)
            # One space after the colon is not part of the value; a value that starts with one keeps it.
            body += b"data:" + (b" " + value if draw(st.booleans()) or value.startswith(b" ") else value)
            body += draw(ENDINGS)
            if draw(st.booleans()):
                body += b"id: 7" + draw(ENDINGS)
        blank = draw(ENDINGS)  # the blank line that ends the event (after a CR, an LF would make a CRLF)
        body += b"\r" if body.endswith(b"\r") and blank.startswith(b"\n") else blank
        expected.append(b"\n".join(values))
    return body, expected


def _feed(decoder: SSEDecoder, body: bytes, cuts: list[int]) -> list[bytes]:
    events: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(body)]:
        events += decoder.feed(body[start:cut])
        start = cut
    return events


@given(streams(), st.lists(st.integers(0, 400), max_size=12))
def test_any_chunking_gives_the_events_of_the_whole_body(
    stream: tuple[bytes, list[bytes]], cuts: list[int]
) -> None:
    body, expected = stream
    cuts = [min(c, len(body)) for c in cuts]
    assert _feed(SSEDecoder(), body, cuts) == expected


def test_crlf_cut_between_its_two_bytes_ends_one_line_not_two() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []  # an empty read in between changes nothing
    assert decoder.feed(b"\n\r") == [b"a"]  # the LF completes the CRLF; the CR is the blank line
    assert decoder.feed(b"\ndata: b\n\n") == [b"b"]


@pytest.mark.parametrize("piece", [1, 7, 4096, 100_000])
def test_a_line_past_the_cap_raises_however_it_arrives(piece: int) -> None:
    decoder = SSEDecoder(max_line=10_000)
    line = b"data: " + b"x" * 20_000
    with pytest.raises(LLMAnswerTooLarge, match="LLM_MAX_LINE_BYTES=10000"):
        for start in range(0, len(line), piece):
            decoder.feed(line[start : start + piece])


def test_a_line_at_the_cap_passes_and_the_cap_is_per_line_not_per_stream() -> None:
    decoder = SSEDecoder(max_line=100)
    line = b"data: " + b"y" * 94  # 100 bytes
    assert decoder.feed(line[:50]) == []
    assert decoder.feed(line[50:] + b"\n\n") == [b"y" * 94]
    events = decoder.feed(b"data: small\n\n" * 1_000)
    assert events == [b"small"] * 1_000


def test_the_data_lines_of_one_event_count_together() -> None:
    decoder = SSEDecoder(max_line=100)
    with pytest.raises(LLMAnswerTooLarge):
        decoder.feed(b"data: " + b"z" * 60 + b"\n" + b"data: " + b"z" * 60 + b"\n")
