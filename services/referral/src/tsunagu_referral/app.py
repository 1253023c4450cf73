"""Builds the referral service. Nothing connects until the app's lifespan starts."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events.contracts.intake import PersonErased
from tsunagu_events.reference import ward_for
from tsunagu_events.topics import events_topic
from tsunagu_platform.auth import principal_dependency
from tsunagu_platform.consumer import ReceivedEvent
from tsunagu_platform.http import service_app
from tsunagu_platform.runtime import ServiceRuntime
from tsunagu_platform.serving import SERVING_TYPES, ServingEvent, apply_serving

from tsunagu_referral import consent_view
from tsunagu_referral.api import build_router, install_domain_errors, principal_of
from tsunagu_referral.clock import Clock, offset_clock
from tsunagu_referral.meetings import MeetingService, erase_meeting_keys_of
from tsunagu_referral.overdue import run_every
from tsunagu_referral.referrals import ReferralService
from tsunagu_referral.settings import ReferralSettings
from tsunagu_referral.tables import metadata, serving


async def apply_intake_serving_event(conn: AsyncConnection, event: ReceivedEvent) -> None:
    """One of intake's events to the serving view (the consumer has already refused other tenants)."""
    envelope = event.envelope
    await apply_serving(conn, serving, [ServingEvent(envelope.type, envelope.data, envelope.actoragency)])


TITLE = "Tsunagu つなぎ・会議 (Referral)"


def create_app(settings: ReferralSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or ReferralSettings()
    clock = clock or offset_clock(settings.clock_offset_days)
    runtime = ServiceRuntime(settings, metadata)
    ward = ward_for(settings.tenant)
    referrals = ReferralService(runtime, ward, clock)
    meetings = MeetingService(runtime, ward, clock)
    runtime.consume(
        "consent-view", [events_topic("intake")], consent_view.apply_intake_event, handles=consent_view.HANDLES
    )
    # Who serves each person (tsunagu_platform.serving). Its own consumer group, so that on its first
    # start it reads intake's topic from the beginning and knows every person and case registered
    # before it; per-stream order is the partition's. The group is `referral.serving`, not the former
    # `referral.serving-view`: that group's offsets were committed for the old tables, and the
    # platform's tables start empty, so keeping it would skip intake's history.
    runtime.consume(
        "serving",
        [events_topic("intake")],
        apply_intake_serving_event,
        handles=sorted(SERVING_TYPES),
        check_versions=False,
    )
    runtime.erase_keys_on_person_erased()
    runtime.consume(
        "meeting-key-erasure",
        [events_topic("intake")],
        erase_meeting_keys_of(runtime),
        handles=[PersonErased.event_type],
        check_versions=False,
    )
    if settings.overdue_interval_seconds > 0:
        interval = settings.overdue_interval_seconds
        runtime.background(lambda stop: run_every(referrals, interval, stop))
    router = build_router(
        settings_principal=principal_of(principal_dependency(settings)),
        referrals_service=referrals,
        meetings_service=meetings,
        ward=ward,
    )
    app = service_app(
        runtime,
        title=TITLE,
        description="Closed-loop referrals between agencies and the coordination meetings "
        "(四者連携会議, 支援会議, 重層的支援会議).",
        routers=[router],
    )
    install_domain_errors(app)
    app.state.referrals = referrals
    app.state.meetings = meetings
    return app
