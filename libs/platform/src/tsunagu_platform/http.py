"""The HTTP edge every service shares: lifespan, health, metrics and problem-details errors.

Operators probe `/health/live` (the process answers) and `/health/ready` (its
database and broker answer); Prometheus scrapes `/metrics`. Errors are RFC 9457
problem details so window staff's tools and agency systems can show which field
was wrong without parsing prose.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from tsunagu_platform.logging import configure_logging
from tsunagu_platform.runtime import ServiceRuntime
from tsunagu_platform.store import ConcurrencyConflict

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        # Name the offending fields; never echo their values (they may be personal data).
        errors = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())),
                "message": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in error.errors()
        ]
        return problem(422, "入力内容に誤りがあります (invalid input)", errors=errors)

    @app.exception_handler(ConcurrencyConflict)
    async def _conflict(_request: Request, error: ConcurrencyConflict) -> JSONResponse:
        return problem(
            409,
            "他の職員が先に更新しました (concurrent edit)",
            str(error),
            expected_version=error.expected,
            current_version=error.actual,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        response = problem(error.status_code, str(error.detail))
        response.headers.update(error.headers or {})  # e.g. a 401's WWW-Authenticate (RFC 6750)
        return response


def health_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health/live", summary="The process answers")
    async def live() -> dict[str, str]:
        return {"status": "ok", "service": runtime.settings.service}

    @router.get("/health/ready", summary="Database and broker answer", response_model=None)
    async def ready() -> Response:
        checks = await runtime.readiness()
        ok = all(value == "ok" for value in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def service_app(runtime: ServiceRuntime, *, title: str, description: str, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """A FastAPI app whose lifespan starts and stops the runtime."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        configure_logging(runtime.settings.service, runtime.settings.log_level)
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    install_problem_handlers(app)
    app.include_router(health_router(runtime))
    for router in routers:
        app.include_router(router)
    return app
