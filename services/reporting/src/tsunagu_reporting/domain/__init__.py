"""The reporting domain: pure aggregates, commands and events; no infrastructure imports."""
