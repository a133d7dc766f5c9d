"""The event-stream parser on every framing a server may use, and on streams that are not event streams."""

from __future__ import annotations

import time

import pytest

from watchdog.probes._sse_parser import MalformedSSE, SSEEvent, SSEParser

STREAM = b'event: message\r\ndata: {"a":\r\ndata: 1}\r\nid: 7\r\n\r\n: ping\r\n\r\ndata: second\n\n'
EXPECTED = [SSEEvent("message", '{"a":\n1}', "7"), SSEEvent("message", "second", "7")]


def feed_all(parser: SSEParser, chunks: list[bytes]) -> list[SSEEvent]:
    return [event for chunk in chunks for event in parser.feed(chunk)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(STREAM)])
def test_events_come_out_the_same_whatever_the_chunking(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert feed_all(SSEParser(), chunks) == EXPECTED


def test_cr_only_line_ends_and_a_cr_split_from_its_lf() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: endpoint\rdata: /messages/?session_id=1\r") == []
    assert parser.feed(b"\n\r\n") == [SSEEvent("endpoint", "/messages/?session_id=1")]


def test_bom_comments_unknown_fields_and_data_less_events_are_skipped() -> None:
    parser = SSEParser()
    events = parser.feed("\ufeff: hello\nid: 1\nretry: 1000\n\nfoo: bar\ndata\n\n".encode())
    assert events == [SSEEvent("message", "", "1", 1000)]


def test_an_event_cut_off_is_pending_not_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b'event: message\ndata: {"jsonrpc"') == []
    assert parser.pending


def test_bytes_that_are_not_utf8_are_malformed() -> None:
    with pytest.raises(MalformedSSE, match="not UTF-8"):
        SSEParser().feed(b"data: \xff\xfe\n\n")


def test_an_endless_event_is_refused_at_the_bound() -> None:
    parser = SSEParser(max_event_bytes=1000)
    for _ in range(8):
        parser.feed(b"data: " + b"x" * 100 + b"\n")  # 808 bytes held: still within the bound
    with pytest.raises(MalformedSSE, match="larger than 1000 bytes"):
        parser.feed(b"data: " + b"x" * 300 + b"\n")


def test_the_last_id_and_retry_outlive_their_event_for_resuming() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: e-1\nretry: 500\ndata: \n\n") == [SSEEvent("message", "", "e-1", 500)]
    assert parser.feed(b"id: e-2\n\n") == []  # no data: not dispatched, but the id counts
    assert (parser.last_event_id, parser.retry_ms) == ("e-2", 500)


def test_a_chunk_of_many_blank_lines_parses_in_linear_time() -> None:
    """A million blank lines in one chunk: slicing the buffer per line made this ~30 s (0.3 s for 100,000)."""
    parser = SSEParser()
    t0 = time.perf_counter()
    assert parser.feed(b"\n" * 1_000_000 + b"data: after\n\n")[0].data == "after"
    took = time.perf_counter() - t0
    assert not parser.pending
    assert took < 5.0, f"{took:.1f} s for a million lines: the parser is not linear"
