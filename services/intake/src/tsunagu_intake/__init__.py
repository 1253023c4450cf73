"""Tsunagu intake service: Consultations at every window (断らない相談), persons, consent and companion-support cases."""
