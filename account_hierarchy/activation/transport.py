"""Sending batches of Segment messages: to an HTTP batch endpoint, or to JSONL files.

HTTP follows Segment's API: `POST {url}/v1/batch` with `{"batch": [...], "sentAt": ...}` and
the write key as the basic-auth user. Timeouts, connection errors and 5xx answers are retried
with exponential backoff and jitter, a 429 after its `Retry-After`, all within the
destination's `retry.max_seconds` for the whole run; other 4xx answers reject the batch (its
messages are retried on the next run). The write key is never logged.
"""

import contextlib
import hashlib
import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

import requests
import urllib3
from requests.adapters import HTTPAdapter

from account_hierarchy import settings
from account_hierarchy.catalog.destination_models import Destination, RetrySettings


@dataclass(frozen=True)
class Outcome:
    """What the destination said about one batch."""

    accepted: bool
    code: int | None
    response: str
    attempts: int


class Sender(Protocol):
    """Sends one batch of messages to a destination."""

    def send(self, batch: list[dict]) -> Outcome: ...


class DestinationUnavailableError(RuntimeError):
    """The destination could not be reached (or kept failing) within the retry budget, after
    `attempts` attempts."""

    def __init__(self, message: str, attempts: int = 0):
        super().__init__(message)
        self.attempts = attempts


_REQUESTS_ERRORS = {
    urllib3.exceptions.ProtocolError: requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.DecodeError: requests.exceptions.ContentDecodingError,
    urllib3.exceptions.ReadTimeoutError: requests.exceptions.ReadTimeout,
}


class _Deadline:
    """Shuts the sockets of one attempt down once `seconds` have passed. requests' timeout
    bounds each read of the socket, not the whole answer: a server trickling its headers byte
    by byte would hold an attempt for as long as it likes."""

    def __init__(self, seconds: float):
        self.sockets: list[socket.socket] = []
        self.expired = False
        self.timer = threading.Timer(seconds, self._expire)

    def watch(self, sock: socket.socket) -> None:
        self.sockets.append(sock)
        if self.expired:
            self._expire()

    def _expire(self) -> None:
        self.expired = True
        for sock in self.sockets:
            with contextlib.suppress(OSError):  # (a read waiting on it returns at once)
                sock.shutdown(socket.SHUT_RDWR)


_ATTEMPT = threading.local()  # (`deadline`: the `_Deadline` of this thread's attempt)


class _WatchedConnection:
    """Hands its socket to the current attempt's deadline before waiting for the answer."""

    def getresponse(self, *args: Any, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        deadline = getattr(_ATTEMPT, "deadline", None)
        if deadline is not None and self.sock is not None:
            deadline.watch(self.sock)
        return super().getresponse(*args, **kwargs)


_WATCHED = {
    urllib3.connection.HTTPConnection: type(
        "WatchedHTTPConnection", (_WatchedConnection, urllib3.connection.HTTPConnection), {}
    ),
    urllib3.connection.HTTPSConnection: type(
        "WatchedHTTPSConnection", (_WatchedConnection, urllib3.connection.HTTPSConnection), {}
    ),
}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections are watched by the attempt's deadline."""

    def get_connection_with_tls_context(
        self, *args: Any, **kwargs: Any
    ) -> urllib3.HTTPConnectionPool:
        pool = super().get_connection_with_tls_context(*args, **kwargs)
        pool.ConnectionCls = _WATCHED.get(pool.ConnectionCls, pool.ConnectionCls)
        return pool


class HttpSender:
    """Posts batches to a Segment-compatible HTTP endpoint, with retries (one sender per
    run: the retry budget is the run's)."""

    def __init__(
        self,
        url: str,
        write_key: str,
        retry: RetrySettings,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.endpoint = url.rstrip("/") + "/v1/batch"
        self.write_key, self.retry, self.sleep, self.clock = write_key, retry, sleep, clock
        self.retrying = 0.0  # seconds of the run spent on failed attempts and waits

    def send(self, batch: list[dict]) -> Outcome:
        """Deliver one batch; raise `DestinationUnavailableError` when the run's retry budget
        (`retry.max_seconds`, spent on failed attempts and the waits after them, over all the
        batches this sender sends) runs out."""
        body = {"batch": batch, "sentAt": datetime.now(UTC).isoformat()}
        attempt = 0
        while True:
            attempt += 1
            started = self.clock()
            wait, problem = self._try(body, attempt)
            if isinstance(wait, Outcome):
                return wait
            self.retrying += self.clock() - started
            if self.retrying + wait > self.retry.max_seconds:
                raise DestinationUnavailableError(
                    f"{self.endpoint}: {problem} after {attempt} attempts; giving up, the run's "
                    f"retries having reached {self.retry.max_seconds:g} s (the next run sends "
                    "what is owed)",
                    attempt,
                )
            self.sleep(wait)
            self.retrying += wait

    def _try(self, body: dict, attempt: int) -> tuple[Outcome | float, str]:
        """One attempt: an outcome, or how long to wait before the next one and why."""
        backoff = backoff_seconds(self.retry, attempt)
        deadline = _Deadline(self.retry.timeout_seconds)
        _ATTEMPT.deadline = deadline
        deadline.timer.start()
        try:
            # (a redirect is not followed: requests would follow it as a GET without the body,
            # and take that answer as the batch's)
            with requests.Session() as session:
                session.mount("http://", _WatchedAdapter())
                session.mount("https://", _WatchedAdapter())
                response = session.post(
                    self.endpoint, json=body, auth=(self.write_key, ""),
                    timeout=self.retry.timeout_seconds, allow_redirects=False, stream=True,
                )  # fmt: skip
                with response:
                    text = _read(response)
            if deadline.expired:  # (the answer was cut off when its time was up)
                raise requests.Timeout("the answer took longer than timeout_seconds")
        except requests.RequestException as error:
            # (an answer cut off, or one that cannot be decoded, is no answer: the batch may or
            # may not have been applied)
            return backoff, "Timeout" if deadline.expired else f"{type(error).__name__}"
        finally:
            deadline.timer.cancel()
            _ATTEMPT.deadline = None
        if response.status_code == 429:
            return _retry_after(response, backoff), "429 Too Many Requests"
        if response.status_code >= 500:
            return backoff, f"HTTP {response.status_code}"
        if response.is_redirect:
            text = (f"redirected to {response.headers.get('Location')}: not delivered; set the "
                    "destination's url to where it points")  # fmt: skip
        accepted = 200 <= response.status_code < 300
        return Outcome(accepted, response.status_code, text, attempt), ""


def backoff_seconds(retry: RetrySettings, attempt: int) -> float:
    """The wait after failed attempt number `attempt` (from 1): exponential, capped at
    `max_backoff_seconds`, with jitter (half to all of it)."""
    # (the exponent capped too: 2.0 ** 1024 is no float)
    doubled = retry.initial_backoff_seconds * 2.0 ** min(attempt - 1, 64)
    return min(retry.max_backoff_seconds, doubled) * random.uniform(0.5, 1.0)


def _read(response: requests.Response) -> str:
    """The answer's first 500 characters (its first 64 KiB read)."""
    data = b""
    while len(data) <= 65536:
        try:
            # (`read1` returns what has arrived; `read` would wait for its whole amount)
            chunk = response.raw.read1(8192, decode_content=True)
        except urllib3.exceptions.HTTPError as error:  # (named as requests names them)
            raise _REQUESTS_ERRORS.get(type(error), requests.ConnectionError)(error) from None
        if not chunk:
            break
        data += chunk
    try:
        return data.decode(response.encoding or "utf-8", errors="replace")[:500]
    except LookupError:  # (a charset Python does not know)
        return data.decode("utf-8", errors="replace")[:500]


def _retry_after(response: requests.Response, fallback: float) -> float:
    """The seconds a 429's `Retry-After` asks for: a number of seconds or an HTTP date."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return fallback
    if moment.tzinfo is None:  # (HTTP dates are GMT)
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


class JsonlSender:
    """Writes each batch as a JSONL file in a folder (the offline destination)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def send(self, batch: list[dict]) -> Outcome:
        """Write the batch to a new file named after its messages; accepted once written (a
        folder that cannot be written makes the destination unavailable)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DestinationUnavailableError(f"{self.folder}: {error}", 1) from None
        lines = "".join(json.dumps(message, sort_keys=True) + "\n" for message in batch)
        digest = hashlib.sha1("".join(m["messageId"] for m in batch).encode()).hexdigest()[:16]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.folder / f"batch-{stamp}-{digest}.jsonl"
        temporary = path.with_name("." + path.name)
        try:
            with temporary.open("w") as file:
                file.write(lines)
                file.flush()
                os.fsync(file.fileno())
            temporary.rename(path)
            # (the rename itself is on disk once the folder is: a crash after the state
            # records the batch as accepted must not lose its file)
            folder = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise DestinationUnavailableError(f"{self.folder}: {error}", 1) from None
        return Outcome(True, None, str(path), 1)


def sender_for(destination: Destination) -> Sender:
    """The sender of a destination (reading an HTTP write key from its environment variable);
    a jsonl folder inside the landing folder is refused: its batches would land as events."""
    if destination.type == "jsonl":
        folder, landing = Path(destination.folder), settings.landing_dir()
        if folder.resolve().is_relative_to(landing.resolve()):
            raise DestinationUnavailableError(
                f"destination {destination.name}: its folder {folder} is inside the landing "
                f"folder {landing} (AH_LANDING_DIR), where its batches would be ingested as "
                "events: choose another folder"
            )
        return JsonlSender(folder)
    write_key = os.environ.get(destination.write_key_env or "")
    if not write_key:
        raise DestinationUnavailableError(
            f"destination {destination.name}: environment variable {destination.write_key_env} "
            "(its write key) is not set"
        )
    try:
        write_key.encode("latin-1")  # (basic auth sends it as Latin-1)
    except UnicodeEncodeError:
        raise DestinationUnavailableError(
            f"destination {destination.name}: environment variable {destination.write_key_env} "
            "(its write key) holds characters a basic-auth user cannot carry"
        ) from None
    return HttpSender(destination.url, write_key, destination.retry)
