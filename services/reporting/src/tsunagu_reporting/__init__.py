"""Tsunagu reporting service: the ward's annual tables, companion-support timelines and audit
replay, from events alone."""
