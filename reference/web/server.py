"""The web listener: aiohttp on the node's own event loop, HTTPS with the mail certificate."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from reference.clock import Clock
from reference.directory import DirectoryError
from reference.log import event
from reference.metrics import CONTENT_TYPE, Metrics
from reference.service import Admin, Conflict, Invalid, NotFound, ServiceError
from reference.smtp.authlimit import AuthLimiter
from reference.web.api import Call, Route, routes
from reference.web.auth import WebAuth
from reference.web.lists import one_click
from reference.web.openapi import document
from reference.web.panel import Panel
from reference.web.problems import HttpProblem, from_validation, problem_response
from reference.web.sessions import SessionStore

__all__ = ["MAX_BODY", "Probe", "WebServer"]

log = logging.getLogger("mailspec.web")

# A readiness probe: None when ready, else what is wrong.
Probe = Callable[[], Awaitable[str | None]]
# Bodies are small records; anything larger is refused before it is read (413).
MAX_BODY = 64 * 1024
_PROBE_TIMEOUT = 5.0
KEEPALIVE = 75.0
_SERVICE_STATUS = {Invalid: 422, NotFound: 404, Conflict: 409}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


def _dump(value: BaseModel | list[Any]) -> Any:
    if isinstance(value, list):
        return [v.model_dump(mode="json") for v in value]
    return value.model_dump(mode="json")


@web.middleware
async def _problems(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every refusal as problem details: ours, aiohttp's (404, 405, 413), the service's."""
    try:
        return await handler(request)
    except HttpProblem as p:
        return problem_response(p)
    except ServiceError as e:
        status = next((s for t, s in _SERVICE_STATUS.items() if isinstance(e, t)), 422)
        return problem_response(HttpProblem(status, str(e), field=e.field))
    except DirectoryError as e:  # a refusal the service did not foresee (a race): still a 4xx
        return problem_response(HttpProblem(422, str(e)))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        detail = e.text or e.reason
        if e.status == 413:
            detail = f"the body is larger than {MAX_BODY} bytes"
        allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None  # on a 405
        return problem_response(
            HttpProblem(e.status, detail.removeprefix(f"{e.status}: "), headers=allow)
        )


class WebServer:
    """The control plane: /api/v1 (JSON, problem details), the panel's pages, /metrics,
    /healthz, /readyz."""

    def __init__(
        self,
        admin: Admin,
        metrics: Metrics,
        limiter: AuthLimiter,
        clock: Clock,
        *,
        probes: Mapping[str, Probe],
        panel: bool = False,
        max_body: int = MAX_BODY,
    ) -> None:
        self.admin = admin
        self.metrics = metrics
        self.auth = WebAuth(admin.directory, limiter, clock)
        self.probes = dict(probes)
        self.max_body = max_body
        self.routes = routes()
        self.openapi = document(self.routes, max_body)
        self._runner: web.AppRunner | None = None
        # The browser pages, where the node has the stores they show.
        self.sessions: SessionStore | None = None
        self.panel: Panel | None = None
        if panel:
            self.sessions = SessionStore(admin.cfg.data_path / "panel-sessions.sqlite3", clock)
            self.panel = Panel(admin, self.auth, self.sessions)

    def application(self) -> web.Application:
        app = web.Application(middlewares=[_problems], client_max_size=self.max_body)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/api/v1/openapi.json", self.openapi_page)
        app.add_routes([one_click(self.admin)])  # its token is its credential
        for route in self.routes:
            app.router.add_route(route.method, route.path, self._endpoint(route))
        if self.panel is not None:
            self.panel.add_routes(app)
        return app

    async def start(
        self, host: str, port: int, tls: ssl.SSLContext, sock: socket.socket | None = None
    ) -> asyncio.Server:
        """Listen on ``host:port`` or ``sock`` (HTTPS); the server is the node's like any
        listener."""
        if self._runner is None:
            # An idle connection is closed after a while (aiohttp's default is an hour).
            self._runner = web.AppRunner(
                self.application(), access_log=None, keepalive_timeout=KEEPALIVE
            )
            await self._runner.setup()
        protocol = self._runner.server
        assert protocol is not None  # made by setup()
        loop = asyncio.get_running_loop()
        if sock is not None:
            return await loop.create_server(protocol, sock=sock, ssl=tls)
        return await loop.create_server(protocol, host, port, ssl=tls, reuse_address=True)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.sessions is not None:
            self.sessions.close()
            self.sessions = None

    # -- health and metrics

    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready when every probe passes; otherwise 503 naming each that does not."""

        async def run(probe: Probe) -> str | None:
            try:
                return await asyncio.wait_for(probe(), _PROBE_TIMEOUT)
            except TimeoutError:
                return f"no answer within {_PROBE_TIMEOUT:g} s"

        names = list(self.probes)
        results = await asyncio.gather(*(run(self.probes[n]) for n in names))
        failing = {n: why for n, why in zip(names, results, strict=True) if why is not None}
        checks = {n: failing.get(n, "ok") for n in names}
        if failing:
            event(log, "readyz.failing", checks=",".join(failing))
            return _json({"status": "not ready", "failing": sorted(failing), "checks": checks}, 503)
        return _json({"status": "ready", "failing": [], "checks": checks})

    async def metrics_page(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(self.metrics.render)  # reads the spool for queue depth
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def openapi_page(self, request: web.Request) -> web.Response:
        return _json(self.openapi)

    # -- the API

    def _endpoint(self, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def endpoint(request: web.Request) -> web.Response:
            who = await self.auth.principal(
                request.headers.get("Authorization", ""), request.remote or ""
            )
            if who.role not in route.roles:
                raise HttpProblem(403, f"the {who.role} role may not {route.summary}")
            body = await self._body(request, route)
            query = self._query(request, route)
            result = await route.handler(Call(request, who, body, self.admin, query))
            event(log, "api", method=route.method, path=request.path, role=who.role)
            if result is None:
                return web.Response(status=route.status)
            return _json(_dump(result), route.status)

        return endpoint

    @staticmethod
    def _query(request: web.Request, route: Route) -> BaseModel | None:
        """The query string validated by the route's model (each name once)."""
        if route.query is None:
            return None
        names = [name for name, _ in request.query.items()]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise HttpProblem(422, f"{repeated[0]} is given more than once", field=repeated[0])
        try:
            return route.query.model_validate(dict(request.query))
        except ValidationError as e:
            raise from_validation(e) from None

    async def _body(self, request: web.Request, route: Route) -> BaseModel | None:
        """The request body validated by the route's model; none where the route takes none."""
        length = request.content_length
        if length is not None and length > self.max_body:
            raise HttpProblem(413, f"the body is larger than {self.max_body} bytes")
        raw = await request.read()  # aiohttp stops at client_max_size too (413)
        if route.body is None:
            if raw.strip():
                raise HttpProblem(400, f"{route.method} {route.path} takes no body")
            return None
        if request.content_type != "application/json":
            raise HttpProblem(415, "send the body as application/json")
        try:
            return route.body.model_validate_json(raw or b"{}")
        except ValidationError as e:
            raise from_validation(e) from None
