"""The SSE decoder of the LLM stream: the same events however the body is cut into chunks, and a cap
on one line (or one event) that holds whether the line arrives in one chunk or in many; and the answer
reader on top of it (keep-alive comments, an error event inside a 200 stream, the usage-only last
chunk, the answer cap), fed what the scripted endpoint sends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.errors import LLMAnswerTooLarge, LLMStreamError
from worker.llm.sse import DEFAULT_ERROR_MESSAGE, AnswerReader, SSEDecoder
from worker.llm.usage import Usage
from worker.llm_stub.server import DONE, answer_text, completion_chunk, split_content, usage_chunk

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


# --- AnswerReader: the chat.completion.chunk events of one streamed answer --------------------------

MODEL = "vendor/scripted"


def _chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> str:
    return completion_chunk("chatcmpl-1", 1_700_000_000, MODEL, delta, finish, **extra)


def _answer_body(pieces: list[str], usage: dict[str, int] | None = None, keep_alive: bool = False) -> bytes:
    """A streamed answer as the scripted endpoint sends it: deltas, the finish, the usage, [DONE]."""
    events = []
    for index, piece in enumerate(pieces):
        if keep_alive:
            events.append(": OPENROUTER PROCESSING\n\n" if index % 2 == 0 else ": keep-alive\n\n")
        events.append(_chunk({"role": "assistant", "content": piece} if index == 0 else {"content": piece}))
    events.append(_chunk({}, "stop"))
    if usage is not None:
        events.append(usage_chunk("chatcmpl-1", 1_700_000_000, MODEL, usage))
    events.append(DONE)
    return "".join(events).encode()


def _read(reader: AnswerReader, body: bytes, piece: int) -> bool:
    """Feed `body` in pieces of `piece` bytes; whether the reader saw [DONE]."""
    for start in range(0, len(body), piece):
        if reader.feed(body[start : start + piece]):
            return True
    return False


PIECES = split_content(answer_text([{"role": "user", "content": "Rotate the TLS certificates"}], "scripted"))


@pytest.mark.parametrize("piece", [1, 3, 64, 1 << 20])
def test_an_answer_split_anywhere_reads_the_same(piece: int) -> None:
    counts: list[int] = []
    reader = AnswerReader(on_tokens=counts.append, counted=5)
    assert _read(reader, _answer_body(PIECES, keep_alive=True), piece) is True
    assert reader.text == "".join(PIECES) and reader.model == MODEL and reader.finish == "stop"
    assert counts == [5 + n for n in range(1, len(PIECES) + 1)]  # deltas of earlier calls count first
    assert reader.usage is None  # the endpoint sent none: the stream module estimates it


def test_keep_alive_comments_alone_are_no_events() -> None:
    reader = AnswerReader()
    assert reader.feed(b": keep-alive\n\n: OPENROUTER PROCESSING\n\n" * 100) is False
    assert reader.parts == [] and reader.finish is None and reader.received > 0


def test_the_usage_only_last_chunk_is_the_usage() -> None:
    reported = {"prompt_tokens": 412, "completion_tokens": len(PIECES), "total_tokens": 412 + len(PIECES)}
    reader = AnswerReader()
    assert _read(reader, _answer_body(PIECES, usage=reported), 100) is True
    assert reader.usage == Usage(412, len(PIECES), 412 + len(PIECES))
    assert reader.usage.as_dict() == {**reported, "estimated": False}


def test_nothing_after_done_is_read() -> None:
    reader = AnswerReader()
    assert reader.feed(_answer_body(["a"]) + _chunk({"content": "after"}).encode()) is True
    assert reader.text == "a"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ({"message": "upstream provider error during generation", "code": 502}, "upstream provider error"),
        ({"code": 502}, DEFAULT_ERROR_MESSAGE),
    ],
)
def test_an_error_event_inside_a_200_stream_raises(error: dict[str, object], message: str) -> None:
    reader = AnswerReader()
    reader.feed(_chunk({"role": "assistant", "content": "{"}).encode())
    with pytest.raises(LLMStreamError, match=f"LLM stream reported an error: {message}"):
        reader.feed(_chunk({"content": ""}, "error", error=error).encode())
    assert reader.text == "{"


def test_a_data_line_that_is_not_json_raises() -> None:
    with pytest.raises(LLMStreamError, match="malformed event"):
        AnswerReader().feed(b"data: <html>502 Bad Gateway</html>\n\n")


def test_the_answer_cap_counts_every_byte_of_the_body() -> None:
    body = _answer_body(PIECES, keep_alive=True)
    assert AnswerReader(max_answer=len(body)).feed(body) is True  # at the cap: read
    reader = AnswerReader(max_answer=len(body) - 1)
    with pytest.raises(LLMAnswerTooLarge, match=f"LLM_MAX_ANSWER_BYTES={len(body) - 1}"):
        _read(reader, body, 7)


def test_the_line_cap_holds_inside_the_reader() -> None:
    line = _chunk({"content": "x" * 5_000}).encode()
    with pytest.raises(LLMAnswerTooLarge, match="LLM_MAX_LINE_BYTES=1000"):
        _read(AnswerReader(max_line=1_000), line, 100)
