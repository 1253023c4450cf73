"""Tsunagu's event backbone, shared by the four services.

Correctness lives here and in each service's database, never in broker
transactions: events and their outbox rows commit together, the relay publishes
at least once, and consumers make redelivery harmless with an inbox.
"""
