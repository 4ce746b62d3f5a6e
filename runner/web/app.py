"""The console's routes: login, overview, inbox, runs, operate; every page behind the token."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import markupsafe
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from runner.errors import FlowrunError
from runner.redact import show
from runner.runs import STATUS_EXIT, NotFound, Runs
from runner.web import data
from runner.web.readiness import readiness_page
from runner.web.security import HEADERS, SESSION_COOKIE, SESSION_MAX_AGE_S, Sessions

HERE = Path(__file__).resolve().parent
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
NOTES = {
    "approved": "Approved; the run continues.",
    "rejected": "Rejected; the run ends denied.",
    "killed": "The run was killed.",
    "kill requested": "Kill requested: the run stops at its next node boundary.",
    "writes_on": "Writes are on.",
    "writes_off": "Writes are off: every write in every run is refused.",
    "undone": "Undo finished; see the report below.",
}
PUBLIC = ("/login", "/static/")


@dataclass
class ConsoleConfig:
    """What `flowrun serve` was started with."""

    store_path: Path | str  # a store file or a postgresql:// URL
    token: str
    mermaid: Path | None = None  # a local mermaid ESM build (mermaid.esm.min.mjs)
    secret: bytes | None = None
    resume_wait_s: float = 2.0
    env: dict[str, str] | None = field(default=None)  # environment of resumed runs


def _shown(value: Any) -> Any:
    """Every value a page prints is redacted (secrets, personal data); values the console
    itself marks safe (its CSRF token) pass: a page is one more place a run is shown."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return show(value)
    return value


def _env() -> jinja2.Environment:
    """Autoescaping on for everything: spec, inputs and model outputs are untrusted."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        finalize=_shown,
    )
    env.filters["usd"] = lambda x: f"${(x or 0):.6f}"
    env.filters["age"] = data.age
    env.filters["when"] = data.when
    # who started or decided: an operator's identity, shown as is (it is not run data)
    env.filters["identity"] = lambda x: markupsafe.Markup(markupsafe.escape(x))
    env.globals["colours"] = data.STATUS_COLOURS
    return env


class Console:
    """One console over one store: routes, sessions, and the resume processes it starts."""

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.sessions = Sessions(config.token, config.secret)
        self.templates = _env()
        self.children: list[subprocess.Popen[bytes]] = []

    # -- plumbing ------------------------------------------------------------------------------
    def runs_(self) -> Runs:
        """A store connection per request: sqlite connections are not shared across threads."""
        return Runs.open(self.config.store_path)

    def page(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        sid = request.state.sid
        with contextlib.closing(self.runs_()) as r:
            writes_on = r.writes_enabled()
            waiting = len(r.inbox())
        html = self.templates.get_template(name).render(
            csrf=markupsafe.Markup(markupsafe.escape(self.sessions.csrf(sid))) if sid else "",
            writes_on=writes_on,
            waiting=waiting,
            note=NOTES.get(request.query_params.get("note", "")),
            mermaid_url="/mermaid/" + self.config.mermaid.name if self.config.mermaid else None,
            **ctx,
        )
        return HTMLResponse(html, status_code=status)

    def error(self, request: Request, e: FlowrunError) -> HTMLResponse:
        status = 400
        if isinstance(e, NotFound):
            status = 409 if "already" in str(e) else 404
        elif "already" in str(e) or "still running" in str(e):
            status = 409
        return self.page(request, "error.html", status, message=str(e), hint=e.hint)

    async def form(self, request: Request) -> dict[str, str]:
        """The submitted form after its CSRF token was checked; refused with 403 otherwise."""
        form = await request.form()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        if not self.sessions.csrf_ok(request.state.sid, values.get("csrf")):
            raise _Refused("missing or wrong CSRF token")
        return values

    def resume(self, run_id: str) -> subprocess.Popen[bytes]:
        """Continue a decided local run in its own process (`flowrun resume`, through Runs)."""
        log = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by the reaper thread
        # the store goes by the environment, not argv: a PostgreSQL URL may hold a password
        env = {**(os.environ if self.config.env is None else self.config.env)}
        env["FLOWRUN_STORE"] = str(self.config.store_path)
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner.cli", "resume", run_id],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        self.children.append(proc)
        threading.Thread(target=self._reap, args=(proc, run_id, log), daemon=True).start()
        return proc

    def _reap(self, proc: subprocess.Popen[bytes], run_id: str, log: Any) -> None:
        """Wait for a resume process; record its error when it could not run the workflow."""
        rc = proc.wait()
        if rc not in STATUS_EXIT.values():
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            with contextlib.suppress(FlowrunError), contextlib.closing(self.runs_()) as r:
                r.event(run_id, "console_resume_failed", exit_code=rc, stderr=tail)
        log.close()

    async def settle(self, proc: subprocess.Popen[bytes]) -> None:
        """Give a resumed run a moment, so the page after a decision mostly shows its outcome."""
        deadline = time.monotonic() + self.config.resume_wait_s
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    # -- auth --------------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None:
            if self.sessions.check_token(token):
                return self._logged_in()
            return self.page(request, "login.html", 401, failed=True)
        return self.page(request, "login.html", failed=False)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        token = form.get("token")
        if isinstance(token, str) and self.sessions.check_token(token):
            return self._logged_in()
        return self.page(request, "login.html", 401, failed=True)

    def _logged_in(self) -> Response:
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(
            SESSION_COOKIE,
            self.sessions.issue(),
            max_age=SESSION_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            path="/",
        )
        return resp

    async def logout(self, request: Request) -> Response:
        await self.form(request)
        self.sessions.revoke(request.state.sid)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    # -- pages ---------------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        with contextlib.closing(self.runs_()) as r:
            view = data.overview(r.store)
        return self.page(request, "overview.html", **view)

    async def inbox(self, request: Request) -> Response:
        with contextlib.closing(self.runs_()) as r:
            items = data.inbox_items(r.store)
        return self.page(request, "inbox.html", items=items)

    async def runs(self, request: Request) -> Response:
        q = request.query_params
        filters = {k: (q.get(k) or None) for k in ("status", "workflow", "tenant")}
        with contextlib.closing(self.runs_()) as r:
            rows = r.list_runs(**filters, limit=200)
            workflows = r.workflows()
        return self.page(request, "runs.html", rows=rows, filters=filters, workflows=workflows)

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        with contextlib.closing(self.runs_()) as r:
            view = data.run_page(r.store, run_id)
        return self.page(request, "run.html", **view)

    async def trace(self, request: Request) -> Response:
        from runner.trace.tree import render_trace, trace_data

        run_id = request.path_params["run_id"]
        with contextlib.closing(self.runs_()) as r:
            text = render_trace(trace_data(r.store, run_id))
        return self.page(request, "trace.html", run_id=run_id, text=text)

    # -- decisions and operations ------------------------------------------------------------
    async def decide(self, request: Request) -> Response:
        """Decide through runs: a Temporal run's workflow is woken, a local run resumed aside."""
        form = await self.form(request)
        run_id, node_id = request.path_params["run_id"], request.path_params["node_id"]
        approve = request.path_params["verb"] == "approve"
        by = form.get("by", "").strip()
        reason = form.get("reason", "").strip() or None
        if not by:
            raise FlowrunError("your name is required: it is recorded in the audit trail")
        if not approve and not reason:
            raise FlowrunError("a reason is required to reject")
        with contextlib.closing(self.runs_()) as r:
            approval = r.approval(run_id, node_id)
            schema = approval.get("decision_schema") if approval else None
            decision = None
            if approve:
                try:
                    decision = data.parse_decision(schema, form)
                except data.DecisionError as e:
                    raise FlowrunError(str(e)) from None
            decided = await r.decide(
                run_id, node_id, approve=approve, by=by, decision=decision, reason=reason
            )
        if decided.needs_resume:
            await self.settle(self.resume(run_id))
        else:
            await self.settle_run(run_id)
        note = "approved" if approve else "rejected"
        return RedirectResponse(f"/runs/{quote(run_id)}?note={note}", status_code=303)

    async def settle_run(self, run_id: str) -> None:
        """Give a woken Temporal run a moment to finish, so the next page mostly shows it."""
        from runner.runs import TERMINAL

        deadline = time.monotonic() + self.config.resume_wait_s
        while time.monotonic() < deadline:
            with contextlib.closing(self.runs_()) as r:
                if r.get(run_id).status in TERMINAL:
                    return
            await asyncio.sleep(0.05)

    async def kill(self, request: Request) -> Response:
        form = await self.form(request)
        run_id = request.path_params["run_id"]
        with contextlib.closing(self.runs_()) as r:
            outcome = await r.kill(run_id, by=form.get("by", "").strip() or "console")
        return RedirectResponse(
            f"/runs/{quote(run_id)}?{urlencode({'note': outcome})}", status_code=303
        )

    async def writes(self, request: Request) -> Response:
        form = await self.form(request)
        state = form.get("state")
        if state not in ("on", "off"):
            raise FlowrunError("writes: state must be on or off")
        by = form.get("by", "").strip()
        if not by:
            raise FlowrunError("your name is required to flip the writes switch")
        with contextlib.closing(self.runs_()) as r:
            r.set_writes(state == "on", by)
        return RedirectResponse(f"/?note=writes_{state}", status_code=303)

    async def undo_confirm(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        with contextlib.closing(self.runs_()) as r:
            view = data.run_page(r.store, run_id)
        return self.page(request, "undo.html", report=None, **view)

    async def undo(self, request: Request) -> Response:
        form = await self.form(request)
        run_id = request.path_params["run_id"]
        if form.get("confirm") != run_id:
            raise FlowrunError(
                "undo not confirmed", hint="type the run id into the confirmation box"
            )
        by = form.get("by", "").strip()
        if not by:
            raise FlowrunError("your name is required to undo a run")
        with contextlib.closing(self.runs_()) as r:
            report = await r.undo(run_id, by=by)
            view = data.run_page(r.store, run_id)
        return self.page(request, "undo.html", report=report, **view)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return self.page(request, "error.html", 404, message="not found", hint=None)
        return FileResponse(HERE / "static" / name, media_type=STATIC[name])

    async def mermaid(self, request: Request) -> Response:
        """The configured local mermaid build and its chunks; nothing outside its folder."""
        if self.config.mermaid is None:
            return self.page(request, "error.html", 404, message="not found", hint=None)
        root = self.config.mermaid.parent.resolve()
        target = (root / request.path_params["path"]).resolve()
        if not target.is_relative_to(root) or not target.is_file() or target.suffix != ".mjs":
            return self.page(request, "error.html", 404, message="not found", hint=None)
        return FileResponse(target, media_type="text/javascript")


class _Refused(FlowrunError):
    """A state-changing request without a valid CSRF token or session."""


Handler = Callable[[Request], Awaitable[Response]]


def create_app(config: ConsoleConfig) -> Starlette:
    """The ASGI app; `flowrun serve` runs it under uvicorn, tests under TestClient."""
    c = Console(config)

    def guard(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except _Refused as e:
                return HTMLResponse(f"forbidden: {e}", status_code=403)
            except FlowrunError as e:
                return c.error(request, e)

        return wrapped

    routes = [
        Route("/login", guard(c.login_page), methods=["GET"]),
        Route("/login", guard(c.login), methods=["POST"]),
        Route("/logout", guard(c.logout), methods=["POST"]),
        Route("/", guard(c.overview)),
        Route("/inbox", guard(c.inbox)),
        Route("/runs", guard(c.runs)),
        Route("/runs/{run_id}", guard(c.run)),
        Route("/runs/{run_id}/trace", guard(c.trace)),
        Route("/runs/{run_id}/kill", guard(c.kill), methods=["POST"]),
        Route("/runs/{run_id}/undo", guard(c.undo_confirm), methods=["GET"]),
        Route("/runs/{run_id}/undo", guard(c.undo), methods=["POST"]),
        Route(
            "/approvals/{run_id}/{node_id}/{verb:str}",
            guard(c.decide),
            methods=["POST"],
        ),
        Route("/writes", guard(c.writes), methods=["POST"]),
        Route("/readiness", guard(functools.partial(readiness_page, c))),
        Route("/static/{name}", guard(c.static)),
        Route("/mermaid/{path:path}", guard(c.mermaid)),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(_Gate, console=c)])
    app.state.console = c
    return app


class _Gate:
    """Auth and security headers around every request, before any route runs."""

    def __init__(self, app: Any, console: Console) -> None:
        self.app = app
        self.c = console

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                ours = {k.lower().encode() for k in HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in ours]
                headers += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        request = Request(scope)
        sid = self.c.sessions.sid(request.cookies.get(SESSION_COOKIE))
        scope.setdefault("state", {})["sid"] = sid
        method = scope["method"]
        origin = request.headers.get("origin")
        resp: Response | None = None
        if method not in ("GET", "HEAD") and origin and origin != _own_origin(request):
            resp = HTMLResponse("forbidden: cross-origin request", status_code=403)
        elif sid is None and not scope["path"].startswith(PUBLIC):
            if method in ("GET", "HEAD"):
                resp = RedirectResponse("/login", status_code=303)
            else:
                resp = HTMLResponse("forbidden: log in first", status_code=403)
        if resp is not None:
            await resp(scope, receive, send_headers)
            return
        await self.app(scope, receive, send_headers)


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"
