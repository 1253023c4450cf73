"""Tsunagu intake service: consultations at every window (断らない相談), persons, consent,
companion-support cases."""
