"""Event types, their versioned payload models and the upcasters between versions.

Events are stored forever, while payload models evolve. Every version of every
public type stays registered, so an event stored as v1 is still understood: the
registry upcasts its data step by step (v1 → v2 → …) and validates the result with
the latest model. Readers therefore only ever handle the latest shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tsunagu_events.envelope import EventEnvelope

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
P = TypeVar("P", bound="EventPayload")


def schema_id(event_type: str, version: int) -> str:
    """The URI of a payload schema, used as CloudEvents `dataschema` and as the JSON Schema `$id`."""
    return f"urn:tsunagu:schema:{event_type}:v{version}"


class EventPayload(BaseModel):
    """Base of every event payload; subclasses are registered with a type and a version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    version: ClassVar[int]

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class UnknownEventType(LookupError):
    """The event's type or version is not registered here."""


class SchemaViolation(ValueError):
    """The event's data does not satisfy its payload model."""

    def __init__(self, event_type: str, version: int, error: ValidationError | str) -> None:
        detail = error if isinstance(error, str) else _summarise(error)
        super().__init__(f"{event_type} v{version}: {detail}")
        self.event_type = event_type
        self.version = version


def _summarise(error: ValidationError) -> str:
    # Field locations and error kinds only: the input values may be personal data.
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['type']}" for e in error.errors()]
    return "; ".join(parts[:10])


@dataclass(frozen=True)
class Registration:
    event_type: str
    version: int
    model: type[EventPayload]


class EventRegistry:
    """Maps (type, version) to payload models and holds the upcasters between versions."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, int], type[EventPayload]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._latest: dict[str, int] = {}
        # Per type: its latest version and that model's validator, looked up once per event.
        self._current: dict[str, tuple[int, Callable[[Any], Any]]] = {}

    def event(self, event_type: str, version: int = 1) -> Callable[[type[P]], type[P]]:
        """Class decorator registering a payload model as `event_type` at `version`."""

        def register(model: type[P]) -> type[P]:
            key = (event_type, version)
            if key in self._models and self._models[key] is not model:
                raise ValueError(f"{event_type} v{version} is registered twice")
            model.event_type = event_type
            model.version = version
            self._models[key] = model
            self._latest[event_type] = max(version, self._latest.get(event_type, 0))
            self._current.pop(event_type, None)
            return model

        return register

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator registering the function that turns `from_version` data into the next version."""

        def register(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return register

    def latest_version(self, event_type: str) -> int:
        try:
            return self._latest[event_type]
        except KeyError:
            raise UnknownEventType(f"unknown event type {event_type!r}") from None

    def model(self, event_type: str, version: int | None = None) -> type[EventPayload]:
        resolved = self.latest_version(event_type) if version is None else version
        try:
            return self._models[(event_type, resolved)]
        except KeyError:
            raise UnknownEventType(f"unknown version {resolved} of {event_type!r}") from None

    def knows(self, event_type: str) -> bool:
        return event_type in self._latest

    def registrations(self) -> Iterator[Registration]:
        for (event_type, version), model in sorted(self._models.items()):
            yield Registration(event_type, version, model)

    def upcast(self, event_type: str, version: int, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Bring stored data up to the latest version of its type."""
        latest = self.latest_version(event_type)
        if version > latest or (event_type, version) not in self._models:
            raise UnknownEventType(f"unknown version {version} of {event_type!r}")
        while version < latest:
            step = self._upcasters.get((event_type, version))
            if step is None:
                raise UnknownEventType(f"no upcaster from {event_type!r} v{version}")
            data = step(dict(data))
            version += 1
        return version, data

    def decode_data(self, event_type: str, version: int, data: dict[str, Any]) -> EventPayload:
        """Validate data stored at `version` and return the latest payload model."""
        current = self._current.get(event_type)
        if current is None and event_type in self._latest:
            latest = self._latest[event_type]
            # The model's own validator (`model_validate` less its Python-level wrapper), taken
            # when first needed: at registration the model may still await its forward references.
            current = self._current[event_type] = (
                latest,
                self._models[(event_type, latest)].__pydantic_validator__.validate_python,
            )
        if current is not None and current[0] == version:  # the common case: no upcasting
            try:
                payload: EventPayload = current[1](data)
            except ValidationError as error:
                raise SchemaViolation(event_type, version, error) from None
            return payload
        latest, upcast = self.upcast(event_type, version, data)
        model = self._models[(event_type, latest)]
        try:
            return model.model_validate(upcast)
        except ValidationError as error:
            raise SchemaViolation(event_type, version, error) from None

    def decode(self, event: EventEnvelope) -> EventPayload:
        return self.decode_data(event.type, event.dataversion, event.data)

    def validate_stored(self, event_type: str, version: int, data: dict[str, Any]) -> EventPayload:
        """Validate data against the model of exactly `version` (no upcasting)."""
        model = self.model(event_type, version)
        try:
            return model.model_validate(data)
        except ValidationError as error:
            raise SchemaViolation(event_type, version, error) from None


registry = EventRegistry()
"""The process-wide registry every contract module registers into on import."""
