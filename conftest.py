"""Root conftest: the shared fixtures live in tsunagu_platform.testing."""

pytest_plugins = ["tsunagu_platform.testing"]
