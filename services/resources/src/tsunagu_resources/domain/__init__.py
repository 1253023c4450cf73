"""The resources domain: pure aggregates, commands and events; no infrastructure imports."""
