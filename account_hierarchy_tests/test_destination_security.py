"""Destinations seen by operations: urls that cannot work or would show credentials, answers
that cannot be read, folders that cannot be written, and write keys kept out of messages."""

import gzip
import itertools
import os
import socket
import threading
import time

import pytest
from pydantic import ValidationError
from werkzeug import Response

from account_hierarchy.activation.transport import (
    DestinationUnavailableError,
    HttpSender,
    JsonlSender,
    backoff_seconds,
    sender_for,
)
from account_hierarchy.catalog.destination_models import Destination, RetrySettings

SECRET = "sk_live_SECRETVALUE"


def http_destination(**settings) -> Destination:
    defaults = {"name": "crm", "type": "http", "url": "http://127.0.0.1:9",
                "write_key_env": "TEST_WRITE_KEY", "audiences": ["a"]}  # fmt: skip
    return Destination(**{**defaults, **settings})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"https://user:{SECRET}@api.example.com", "must not carry credentials"),
        (f"https://{SECRET}@api.example.com", "must not carry credentials"),
        # (a password holding `/`, `?` or `#`: masked up to the last `@`)
        ("https://user:sk/live_SECRETVALUE@api.example.com", "must"),
        ("https://user:sk?live_SECRETVALUE@api.example.com", "must"),
        ("https://user:sk#live_SECRETVALUE@api.example.com", "must"),
        (f"https://api.example.com/?token={SECRET}", "no query"),
        ("https://api.example.com/segment#v2", "no query (?) or fragment"),
        ("http://..", "names no valid host"),
        ("http://a..b", "names no valid host"),
    ],
)
def test_urls_that_would_post_elsewhere_fail_or_show_credentials_are_refused(url, problem):
    with pytest.raises(ValidationError) as raised:
        http_destination(url=url)
    message = raised.value.errors()[0]["msg"]
    assert problem in message
    assert "SECRETVALUE" not in message and "user:" not in message


def test_a_write_key_pasted_into_write_key_env_is_not_repeated():
    with pytest.raises(ValidationError) as raised:
        http_destination(write_key_env=SECRET)
    message = raised.value.errors()[0]["msg"]
    assert "environment variable name" in message and "SECRETVALUE" not in message


def test_an_answer_that_cannot_be_decoded_is_retried_not_raised(httpserver):
    ok = gzip.compress(b'{"success": true}')
    answers = iter([Response(b"not gzip", headers={"Content-Encoding": "gzip"}),
                    Response(ok, headers={"Content-Encoding": "gzip"})])  # fmt: skip
    httpserver.expect_request("/v1/batch").respond_with_handler(lambda _: next(answers))
    retry = RetrySettings(max_seconds=5, initial_backoff_seconds=0.01, timeout_seconds=2)
    sender = HttpSender(httpserver.url_for("/").rstrip("/"), SECRET, retry)
    outcome = sender.send([{"messageId": "m"}])
    assert (outcome.accepted, outcome.attempts, outcome.response) == (True, 2, '{"success": true}')


def test_the_retry_budget_is_the_runs_not_each_batchs(httpserver):
    """Every batch fails once, then goes: a budget of 1 s is spent over the batches, not
    granted to each (waits of 0.15 to 0.3 s, on a clock only the waits move)."""
    answers = itertools.cycle([Response(status=503), Response('{"success": true}')])
    httpserver.expect_request("/v1/batch").respond_with_handler(lambda _: next(answers))
    retry = RetrySettings(max_seconds=1, initial_backoff_seconds=0.3, max_backoff_seconds=0.3)
    slept = []
    sender = HttpSender(httpserver.url_for("/").rstrip("/"), SECRET, retry,
                        sleep=slept.append, clock=lambda: sum(slept))  # fmt: skip
    sent = 0
    with pytest.raises(DestinationUnavailableError, match="HTTP 503 after 1 attempts"):
        for _ in range(10):
            sender.send([{"messageId": "m"}])
            sent += 1
    assert 3 <= sent <= 6 and sum(slept) <= 1


def test_an_answer_trickling_in_times_out_within_the_retry_budget(httpserver):
    """requests' timeout bounds each read of the socket: a byte every 0.3 s never hit it."""

    def trickle(_) -> Response:
        def spaces():
            for _ in range(40):
                yield b" "
                time.sleep(0.3)

        return Response(spaces(), headers={"Content-Length": "40"})

    httpserver.expect_request("/v1/batch").respond_with_handler(trickle)
    retry = RetrySettings(max_seconds=1, initial_backoff_seconds=0.01, timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(DestinationUnavailableError, match="Timeout"):
        HttpSender(httpserver.url_for("/").rstrip("/"), SECRET, retry).send([{"messageId": "m"}])
    # (the answer would take 12 s: each attempt stops at timeout_seconds)
    assert time.monotonic() - started < 5


def test_headers_trickling_in_time_out_within_the_retry_budget():
    """The status line at once, then a header byte every 0.3 s: requests' timeout, which
    bounds each read, never fires; the attempt's deadline does."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer_slowly():
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            for byte in b"X-Slow: " + b"a" * 40:
                try:
                    connection.sendall(bytes([byte]))
                except OSError:  # (the client gave up)
                    return
                time.sleep(0.3)

    threading.Thread(target=answer_slowly, daemon=True).start()
    retry = RetrySettings(max_seconds=1, initial_backoff_seconds=0.01, timeout_seconds=1)
    started = time.monotonic()
    with server, pytest.raises(DestinationUnavailableError, match="Timeout after 1 attempts"):
        HttpSender(f"http://127.0.0.1:{server.getsockname()[1]}", SECRET, retry).send(
            [{"messageId": "m"}]
        )
    assert time.monotonic() - started < 3  # (the headers would take 14 s)


def test_the_backoff_stays_capped_however_many_attempts():
    """A server answering 429 with `Retry-After: 1` for an hour makes thousands of attempts."""
    retry = RetrySettings(initial_backoff_seconds=0.5, max_backoff_seconds=30)
    assert 0.25 <= backoff_seconds(retry, 1) <= 0.5
    assert 15 <= backoff_seconds(retry, 5000) <= 30


def test_an_answer_in_a_charset_python_does_not_know_is_read_as_utf8(httpserver):
    answer = Response('{"success": true}', content_type="application/json; charset=x-unknown")
    httpserver.expect_request("/v1/batch").respond_with_response(answer)
    retry = RetrySettings(max_seconds=5, initial_backoff_seconds=0.01, timeout_seconds=2)
    outcome = HttpSender(httpserver.url_for("/").rstrip("/"), SECRET, retry).send([{"m": 1}])
    assert (outcome.accepted, outcome.attempts, outcome.response) == (True, 1, '{"success": true}')


def test_a_folder_that_cannot_be_written_makes_the_destination_unavailable(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(DestinationUnavailableError, match="Not a directory"):
        JsonlSender(tmp_path / "a_file" / "outbox").send([{"messageId": "m"}])


@pytest.mark.parametrize("folder", ["landing", "landing/outbox", "landing/../landing/x"])
def test_a_folder_inside_the_landing_folder_is_refused(tmp_path, monkeypatch, folder):
    """Its batches (Segment calls) would be ingested as events at the next run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AH_LANDING_DIR", str(tmp_path / "landing"))
    destination = Destination(name="crm", type="jsonl", folder=folder, audiences=["a"])
    with pytest.raises(DestinationUnavailableError, match="is inside the landing folder"):
        sender_for(destination)
    assert isinstance(sender_for(destination.model_copy(update={"folder": "out"})), JsonlSender)


def test_a_write_that_fails_leaves_no_partial_file(tmp_path, monkeypatch):
    folder = tmp_path / "outbox"
    folder.mkdir()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    with pytest.raises(DestinationUnavailableError, match="No space left"):
        JsonlSender(folder).send([{"messageId": "m"}])
    assert list(folder.iterdir()) == []


def test_a_batch_file_and_its_folder_are_on_disk_before_it_counts_as_accepted(
    tmp_path, monkeypatch
):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr("os.fsync", fsync)
    outcome = JsonlSender(tmp_path / "outbox").send([{"messageId": "m"}])
    assert outcome.accepted
    (written,) = (tmp_path / "outbox").iterdir()
    assert synced[0].startswith(str(tmp_path / "outbox" / f".{written.name}"))
    assert synced[1:] == [str(tmp_path / "outbox")]


def test_a_write_key_basic_auth_cannot_carry_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TEST_WRITE_KEY", "sk_\u20ac_SECRETVALUE")
    with pytest.raises(DestinationUnavailableError) as raised:
        sender_for(http_destination())
    assert "TEST_WRITE_KEY" in str(raised.value) and "crm" in str(raised.value)
    assert "SECRETVALUE" not in str(raised.value)


def test_errors_never_show_the_write_key():
    # a port nothing listens on: connection errors until the budget runs out
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    retry = RetrySettings(max_seconds=0.3, initial_backoff_seconds=0.05, timeout_seconds=1)
    with pytest.raises(DestinationUnavailableError) as raised:
        HttpSender(f"http://127.0.0.1:{port}", SECRET, retry).send([{"messageId": "m"}])
    assert "SECRETVALUE" not in str(raised.value)
