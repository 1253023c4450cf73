"""The intake domain, pure: consultations, persons (with consent), households and companion-support cases."""
