"""The shape of destination definitions: where activations go and what they carry."""

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, FiniteFloat, field_validator, model_validator

from account_hierarchy.catalog.models import Strict, check_name

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
CALLS = ("group", "identify", "track")


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


class RetrySettings(Strict):
    """How long and how hard an HTTP destination is retried within one run."""

    max_seconds: FiniteFloat = Field(default=120.0, ge=0)
    initial_backoff_seconds: FiniteFloat = Field(default=0.5, gt=0)
    max_backoff_seconds: FiniteFloat = Field(default=30.0, gt=0)
    timeout_seconds: FiniteFloat = Field(default=10.0, gt=0)


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
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(f"write_key_env {value!r} must be an environment variable name")
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
        if not (value.startswith(("http://", "https://")) and parts.hostname and port_ok
                and not re.search(r"\s", value)):  # fmt: skip
            raise ValueError(
                f"url {value!r} must be http:// or https://, name a host, have no spaces, and "
                "give a port, if any, from 0 to 65535"
            )
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
