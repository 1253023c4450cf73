"""Fixtures of the platform's own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_platform.db import create_engine
from tsunagu_platform.example import example_metadata
from tsunagu_platform.tables import metadata


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The backbone's tables and the example's read model in an empty database of each kind."""
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(example_metadata.create_all)
    yield engine
    await engine.dispose()
