"""Tsunagu referral service: Closed-loop referrals between agencies and the coordination meetings."""
