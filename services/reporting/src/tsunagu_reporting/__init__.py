"""Tsunagu reporting service: The ward's annual tables, companion-support timelines and audit replay, from events alone."""
