"""Public event contracts, one module per owning service.

Importing this package registers every public event type in `tsunagu_events.registry`.
"""

from tsunagu_events.contracts import agency, common, example, intake, referral, resources

__all__ = ["agency", "common", "example", "intake", "referral", "resources"]
