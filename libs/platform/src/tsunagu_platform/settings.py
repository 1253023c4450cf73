"""Settings every service reads from its environment, with embedded defaults.

Defaults run the whole system on one laptop (Tansu + SQLite under ./var); compose
and Kubernetes override them with DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS and
KAFKA_IDEMPOTENCE=true.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tsunagu_platform.db import default_sqlite_url, normalise_url
from tsunagu_platform.kafka import FETCH_MAX_WAIT_MS

MIN_SIGNING_KEY_BYTES = 32
PLACEHOLDER_KEYS = frozenset(
    {
        "changeme",
        "change",
        "secret",
        "dev",
        "test",
        "password",
        "default",
        "example",
        "placeholder",
        "replaceme",
        "todo",
        "key",
        "signingkey",
        "tokensigningkey",
        "jwtsecret",
        "mysecret",
        "supersecret",
        "insecure",
        "setme",
    }
)
"""Keys (lower-cased, letters and digits only) that tutorials, templates and examples use."""
_PLACEHOLDER_PARTS = ("changeme", "replaceme", "placeholder", "yoursecret")


class UnsafeSigningKey(ValueError):
    """The token signing key is a placeholder or too short: the service refuses to start."""


def check_signing_key(key: str) -> str:
    """The key when it can sign tokens safely; raises UnsafeSigningKey (never repeating the key) otherwise.

    Anyone who guesses the HS256 key mints an administrator's token for every service, so a key
    copied from an example (`change-me`, `secret`, …), one shorter than 32 bytes or one of a few
    repeated characters stops the service at start rather than serving the ward's most sensitive data.
    """
    normalised = "".join(ch for ch in key.lower() if ch.isalnum())
    if len(key.encode("utf-8")) < MIN_SIGNING_KEY_BYTES:
        reason = f"shorter than {MIN_SIGNING_KEY_BYTES} bytes"
    elif normalised in PLACEHOLDER_KEYS or any(part in normalised for part in _PLACEHOLDER_PARTS):
        reason = "a placeholder"
    elif len(set(key)) < 8:
        reason = "too few distinct characters to be random"
    else:
        return key
    raise UnsafeSigningKey(
        f"TSUNAGU_TOKEN_SIGNING_KEY is {reason}: refusing to start. Set a random key of at least "
        f"{MIN_SIGNING_KEY_BYTES} bytes, e.g. `openssl rand -hex 32` (トークン署名鍵が安全ではありません)."
    )


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    service: str = Field(description="Service name: intake, referral, resources or reporting.")
    port: int = Field(description="HTTP port.", validation_alias=AliasChoices("PORT", "port"))
    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("HOST", "host"))
    tenant: str = Field(
        default="131121", pattern=r"^[0-9]{6}$", validation_alias=AliasChoices("TSUNAGU_TENANT", "tenant")
    )
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    var_dir: Path = Field(default=Path("var"), validation_alias=AliasChoices("TSUNAGU_VAR_DIR", "var_dir"))
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers")
    )
    kafka_idempotence: bool = Field(
        default=False, validation_alias=AliasChoices("KAFKA_IDEMPOTENCE", "kafka_idempotence")
    )
    broker_mode: Literal["kafka", "memory"] = Field(
        default="kafka",
        description="'memory' is for component tests under faststream's TestKafkaBroker.",
    )
    topic_partitions: int = Field(
        default=3, ge=1, validation_alias=AliasChoices("TSUNAGU_TOPIC_PARTITIONS", "topic_partitions")
    )
    topic_replication_factor: int = Field(
        default=1, ge=1, validation_alias=AliasChoices("TSUNAGU_TOPIC_REPLICATION_FACTOR", "topic_replication_factor")
    )
    create_topics: bool = Field(
        default=True,
        validation_alias=AliasChoices("TSUNAGU_CREATE_TOPICS", "create_topics"),
        description="Create missing topics at start-up (embedded runs); off where operators own the topics.",
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL", "log_level"))
    consumer_batch: int = Field(default=2000, ge=1, le=5000)
    consumer_fetch_max_wait_ms: int = Field(
        default=FETCH_MAX_WAIT_MS,
        ge=1,
        le=60_000,
        validation_alias=AliasChoices("TSUNAGU_CONSUMER_FETCH_MAX_WAIT_MS", "consumer_fetch_max_wait_ms"),
        description="Longest the broker may hold a consumer's fetch (see tsunagu_platform.kafka.FETCH_MAX_WAIT_MS).",
    )
    consumer_stall_seconds: float = Field(
        default=120.0,
        gt=0,
        validation_alias=AliasChoices("TSUNAGU_CONSUMER_STALL_SECONDS", "consumer_stall_seconds"),
        description="A consumer whose batch runs, or which keeps failing, longer than this turns /health/ready to 503.",
    )
    token_signing_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TSUNAGU_TOKEN_SIGNING_KEY", "token_signing_key"),
        description="HS256 secret for bearer tokens; local runs create var/token-signing.key once.",
    )
    keystore_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TSUNAGU_KEYSTORE_URL", "keystore_url"),
        description="Database of the person keys, kept apart from the events; default var/<service>-keys.db.",
    )
    keystore_master_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TSUNAGU_KEYSTORE_MASTER_KEY", "keystore_master_key"),
        description="Base64 32-byte key wrapping the person keys; local runs create var/<service>-master.key.",
    )

    @property
    def db_url(self) -> str:
        return normalise_url(self.database_url) if self.database_url else default_sqlite_url(self.service, self.var_dir)

    @property
    def keys_url(self) -> str:
        if self.keystore_url:
            return normalise_url(self.keystore_url)
        return default_sqlite_url(f"{self.service}-keys", self.var_dir)

    def signing_key(self) -> str:
        """The token signing key, checked by `check_signing_key`; for local runs one random file under
        var/ shared by all services (created once, 64 characters)."""
        if self.token_signing_key:
            return check_signing_key(self.token_signing_key)
        path = self.var_dir / "token-signing.key"
        if not path.exists():
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return check_signing_key(path.read_text().strip())

    @property
    def source(self) -> str:
        """CloudEvents source of everything this service publishes."""
        return f"/tsunagu/{self.tenant}/{self.service}"
