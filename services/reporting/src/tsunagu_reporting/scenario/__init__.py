"""Scenario generator: a fiscal year of ward activity as the services publish it, with known totals."""
