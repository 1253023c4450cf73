"""Tsunagu resources service: Local resource development, participation support and community building."""
