"""The shape of destination definitions: where activations go and what they carry."""

import re
from typing import Literal
from urllib.parse import urlsplit

import requests
from pydantic import Field, FiniteFloat, field_validator, model_validator
from urllib3.exceptions import LocationParseError

from account_hierarchy.catalog.models import Strict, check_name

ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
CALLS = ("group", "identify", "track")


def _without_credentials(url: str) -> str:
    """The url with any `user:password@`, query and fragment masked (for messages): all up to
    its last `@`, as a password may hold `/`, `?` or `#`."""
    url = re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://).*@", r"\1***@", url, flags=re.DOTALL)
    return re.sub(r"([?#]).*$", r"\1***", url)


class EventNames(Strict):
    """Track event names (Segment's defaults unless renamed)."""

    entered: str = "Audience Entered"
    exited: str = "Audience Exited"
    trait_computed: str = "Trait Computed"

    @field_validator("entered", "exited", "trait_computed")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("an event name needs more than spaces")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> "EventNames":
        if len({self.entered, self.exited, self.trait_computed}) < 3:
            raise ValueError("entered, exited and trait_computed must be different event names")
        return self


# The longest any retry setting may be (a timer or sleep much longer overflows the clock).
DAY_SECONDS = 86_400


class RetrySettings(Strict):
    """How long and how hard an HTTP destination is retried within one run."""

    max_seconds: FiniteFloat = Field(default=120.0, ge=0, le=DAY_SECONDS)
    initial_backoff_seconds: FiniteFloat = Field(default=0.5, gt=0, le=DAY_SECONDS)
    max_backoff_seconds: FiniteFloat = Field(default=30.0, gt=0, le=DAY_SECONDS)
    timeout_seconds: FiniteFloat = Field(default=10.0, gt=0, le=DAY_SECONDS)


class Destination(Strict):
    """A destination receiving Group / Identify / Track calls for audiences and traits."""

    name: str
    type: Literal["http", "jsonl"]
    description: str = ""
    audiences: list[str] = Field(default_factory=list)
    traits: list[str] = Field(default_factory=list)
    output_columns: list[str] = Field(default_factory=list)
    calls: list[Literal["group", "identify", "track"]] = Field(
        default_factory=lambda: [*CALLS], min_length=1
    )
    event_names: EventNames = Field(default_factory=EventNames)
    url: str | None = None
    write_key_env: str | None = None
    folder: str | None = None
    retry: RetrySettings = Field(default_factory=RetrySettings)

    _name = field_validator("name")(check_name)

    @field_validator("audiences", "traits", "output_columns", "calls")
    @classmethod
    def _each_once(cls, values: list[str]) -> list[str]:
        twice = sorted({value for value in values if values.count(value) > 1})
        if twice:
            raise ValueError(f"given twice: {', '.join(twice)}")
        return values

    @field_validator("write_key_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.fullmatch(value):
            # (the value is not repeated: a write key pasted here by mistake is not echoed)
            raise ValueError(
                "write_key_env must be an environment variable name (upper case letters, digits "
                "and underscores), not the write key itself"
            )
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 (reading it checks it: a number from 0 to 65535)
            port_ok = True
        except ValueError:
            port_ok = False
        if not (value.lower().startswith(("http://", "https://")) and parts.hostname and port_ok
                and not re.search(r"\s", value)):  # fmt: skip
            raise ValueError(
                f"url {_without_credentials(value)!r} must be http:// or https://, name a host, "
                "have no spaces, and give a port, if any, from 0 to 65535"
            )
        if parts.username is not None or parts.password is not None:
            # (credentials in the url would be shown wherever the url is: errors, delivery_log)
            raise ValueError(
                f"url {_without_credentials(value)!r} must not carry credentials: the write key "
                "goes in the environment variable named by write_key_env"
            )
        if parts.query or parts.fragment or "?" in value or "#" in value:
            # (the batch goes to {url}/v1/batch: a query or fragment would swallow that path)
            raise ValueError(
                f"url {_without_credentials(value)!r} must have no query (?) or fragment (#): "
                "batches are posted to {url}/v1/batch"
            )
        try:
            # (what the HTTP client would refuse when sending: names it cannot encode, empty
            # labels such as `a..b`)
            requests.Request("POST", value.rstrip("/") + "/v1/batch").prepare()
            if not parts.hostname.startswith("["):
                parts.hostname.encode("idna")
        except (requests.RequestException, LocationParseError, UnicodeError):
            raise ValueError(f"url {_without_credentials(value)!r} names no valid host") from None
        return value

    @model_validator(mode="after")
    def _type_settings(self) -> "Destination":
        """The settings of its type, none of the other's, and something to send (checked once
        every setting is valid; every problem in one message)."""
        problems = []
        if self.type == "http" and not (self.url and self.write_key_env):
            problems.append("an http destination needs `url` and `write_key_env`")
        if self.type == "jsonl" and not self.folder:
            problems.append("a jsonl destination needs `folder`")
        given = self.model_fields_set
        foreign = {"http": ["folder"], "jsonl": ["url", "write_key_env", "retry"]}[self.type]
        if unused := [name for name in foreign if name in given]:
            problems.append(f"{', '.join(unused)}: not a setting of {self.type} destinations")
        if not self.audiences and not self.traits:
            problems.append("a destination needs at least one audience or trait to send")
        if problems:
            raise ValueError("; ".join(problems))
        return self
