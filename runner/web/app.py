"""The console's routes: login, overview, inbox, runs, operate; every page behind the token."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
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
from runner.runs.identity import (
    ALL_TENANTS,
    OPERATOR,
    SHARED_IDENTITY,
    Directory,
    Forbidden,
    Identity,
    audit,
    decision_refusal,
    not_its_tenant,
)
from runner.web import data
from runner.web.oidc import STATE_COOKIE, STATE_MAX_AGE_S, Oidc, OidcConfig, OidcError
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
PUBLIC = ("/login", "/static/", "/oidc/")
NOBODY = Identity(name="(unknown token)", kind="user", source="unknown")  # a refused login
MAX_FORM_BYTES = 1 << 20  # a form of the console (a login, a decision) is far smaller
MAX_NEXT = 2048  # a longer `next` is no page of this console: the login goes to the overview
VERBS = ("approve", "reject")
# the store's errors name its file or database; a page says what was not found, not where
_WHERE = re.compile(r"^(no (?:run|batch|plan bundle) (?:'[^']*'|\"[^\"]*\"|\S+)) in .+$", re.S)


def _local(path: str | None) -> str:
    """Where to go after logging in: a path of this console only (never another site)."""
    if (
        not path
        or len(path) > MAX_NEXT
        or not path.startswith("/")
        or path.startswith("//")
        or "\\" in path
        or any(ord(ch) < 0x20 for ch in path)
        or path.startswith("/login")
    ):
        return "/"
    return path


@dataclass
class ConsoleConfig:
    """What `flowrun serve` was started with."""

    store_path: Path | str  # a store file or a postgresql:// URL
    token: str | None  # the shared console token (loopback only); None: personal tokens only
    mermaid: Path | None = None  # a local mermaid ESM build (mermaid.esm.min.mjs)
    secret: bytes | None = None
    resume_wait_s: float = 2.0
    env: dict[str, str] | None = field(default=None)  # environment of resumed runs
    identities: Path | None = None  # an identities file, besides the store's users
    oidc: OidcConfig | None = None  # sign in through an OpenID Connect provider too


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
    plain_tojson = env.filters["tojson"]

    @jinja2.pass_eval_context
    def tojson(ctx: Any, value: Any, indent: int | None = None) -> Any:
        # tojson's Markup is marked safe and passes `finalize`: redact the value before
        return plain_tojson(ctx, show(value), indent)

    env.filters["tojson"] = tojson
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
        self.directory = Directory(config.store_path, config.identities)
        self.oidc = Oidc(config.oidc, self.sessions.secret) if config.oidc else None
        self.templates = _env()
        self.children: list[subprocess.Popen[bytes]] = []

    # -- plumbing ------------------------------------------------------------------------------
    def runs_(self) -> Runs:
        """A store connection per request: sqlite connections are not shared across threads."""
        return Runs.open(self.config.store_path)

    def who(self, subject: str) -> Identity | None:
        """Who a session's subject (`shared:` or `id:NAME`) is now: a revoked or removed
        identity is nobody."""
        if subject == "shared:":
            return SHARED_IDENTITY if self.sessions.token is not None else None
        if subject.startswith("id:"):
            return self.directory.named(subject[3:])
        return None

    @staticmethod
    def me(request: Request) -> Identity:
        who: Identity | None = request.state.who
        if who is None:
            raise _Refused("log in first")
        return who

    def visible(self, request: Request, r: Runs, run_id: str, action: str = "view") -> None:
        """A run of a tenant the identity does not act for is refused (403, audited)."""
        who = self.me(request)
        row = r.get(run_id)
        if not who.for_tenant(row.tenant):
            reason = not_its_tenant(who, "run")
            audit(r.store, who, action=action, allowed=False, run_id=run_id, via="console",
                  reason=reason)  # fmt: skip
            raise Forbidden(f"{action} refused: {reason}")

    def page(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        sid = request.state.sid
        who: Identity | None = getattr(request.state, "who", None)
        with contextlib.closing(self.runs_()) as r:
            writes_on = r.writes_enabled()
            # approvals waiting for the tenants `who` acts for (the header's and overview's count)
            inbox = r.inbox() if who is not None else []
            if who is not None and ALL_TENANTS not in who.tenants:
                inbox = [a for a in inbox if who.for_tenant(r.get(a["run_id"]).tenant)]
            waiting = len(inbox)
        html = self.templates.get_template(name).render(
            csrf=markupsafe.Markup(markupsafe.escape(self.sessions.csrf(sid))) if sid else "",
            writes_on=writes_on,
            waiting=waiting,
            note=NOTES.get(request.query_params.get("note", "")),
            mermaid_url="/mermaid/" + self.config.mermaid.name if self.config.mermaid else None,
            who=who,
            operator=who is not None and who.has(OPERATOR),
            sso=self.oidc is not None,
            **ctx,
        )
        return HTMLResponse(html, status_code=status)

    def error(self, request: Request, e: FlowrunError) -> HTMLResponse:
        status = 400
        if isinstance(e, Forbidden):
            status = 403
        elif isinstance(e, OidcError):
            status = 401
        elif isinstance(e, NotFound):
            status = 409 if "already" in str(e) else 404
        elif "already" in str(e) or "still running" in str(e):
            status = 409
        message = str(e)
        if isinstance(e, NotFound):
            message = _WHERE.sub(r"\1", message)
        return self.page(request, "error.html", status, message=message, hint=e.hint)

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
            # the printed `/login?token=…` URL is the shared token's; a personal token is never
            # taken from a URL (it would stay in the browser's history)
            return self._log_in(request, token, shared_only=True)
        return self.page(
            request, "login.html", failed=False, next=_local(request.query_params.get("next"))
        )

    async def login(self, request: Request) -> Response:
        form = await request.form()
        token, after = form.get("token"), form.get("next")
        return self._log_in(
            request,
            token if isinstance(token, str) else "",
            after=_local(after if isinstance(after, str) else None),
        )

    def _log_in(
        self, request: Request, token: str, *, shared_only: bool = False, after: str = "/"
    ) -> Response:
        """A personal token (a user of the store or the identities file), else the shared one;
        then the page that asked for a login (a notice's link to an approval, say)."""
        with contextlib.closing(self.runs_()) as r:
            who = None if shared_only else self.directory.authenticate(token, r.store)
            if who is None and self.sessions.check_token(token):
                who = SHARED_IDENTITY
            if who is None:
                # nobody to name: the token is unknown or revoked (it is never recorded)
                audit(r.store, NOBODY, action="log in", allowed=False, via="console",
                      reason="unknown or revoked token")  # fmt: skip
                return self.page(request, "login.html", 401, failed=True, next=after)
            audit(r.store, who, action="log in", allowed=True, via="console")
        return self._session(RedirectResponse(after, status_code=303), who)

    def _session(self, resp: Response, who: Identity) -> Response:
        resp.set_cookie(
            SESSION_COOKIE,
            self.sessions.issue("shared:" if who is SHARED_IDENTITY else "id:" + who.name),
            max_age=SESSION_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            path="/",
        )
        return resp

    def _callback_url(self, request: Request) -> str:
        assert self.oidc is not None
        return self.oidc.config.redirect_uri or f"{_own_origin(request)}/oidc/callback"

    async def oidc_login(self, request: Request) -> Response:
        """Send the browser to the provider; the state, nonce and PKCE verifier go with it in a
        signed cookie (SameSite=Lax: it must come back on the provider's redirect)."""
        if self.oidc is None:
            return self.page(request, "error.html", 404, message="not found", hint=None)
        url, cookie = await self.oidc.start(self._callback_url(request))
        resp = RedirectResponse(url, status_code=303)
        resp.set_cookie(STATE_COOKIE, cookie, max_age=STATE_MAX_AGE_S, httponly=True,
                        samesite="lax", path="/oidc/")  # fmt: skip
        return resp

    async def oidc_callback(self, request: Request) -> Response:
        """The provider vouches for a person; a flowrun user of that name is logged in."""
        if self.oidc is None:
            return self.page(request, "error.html", 404, message="not found", hint=None)
        q = request.query_params
        if q.get("error"):
            raise OidcError(f"the provider refused the sign-in: {q.get('error')}")
        subject = await self.oidc.finish(
            code=q.get("code"),
            state=q.get("state"),
            cookie=request.cookies.get(STATE_COOKIE),
            redirect_uri=self._callback_url(request),
        )
        with contextlib.closing(self.runs_()) as r:
            who = self.directory.named(subject, r.store)
            if who is None:
                audit(r.store, Identity(name=subject, kind="user", source="unknown"),
                      action="log in", allowed=False, via="console-oidc",
                      reason="not a flowrun user")  # fmt: skip
                raise Forbidden(
                    f"{subject!r} signed in at the provider but is not a flowrun user",
                    hint="an operator adds them: flowrun users add NAME --role ...",
                )
            audit(r.store, who, action="log in", allowed=True, via="console-oidc")
        # a page, not a redirect: the session cookie is SameSite=Strict, and a redirect chain
        # that began at the provider would not send it with the first page
        resp = self.page(request, "signed_in.html", who_signed_in=who.name)
        resp.delete_cookie(STATE_COOKIE, path="/oidc/")
        return self._session(resp, who)

    async def logout(self, request: Request) -> Response:
        await self.form(request)
        self.sessions.revoke(request.state.sid)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    # -- pages ---------------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        who = self.me(request)
        with contextlib.closing(self.runs_()) as r:
            view = data.overview(r.store)
        # the figures count every run; the runs listed are only of tenants `who` acts for
        view["running"] = [x for x in view["running"] if who.for_tenant(x.tenant)]
        return self.page(request, "overview.html", **view)

    async def inbox(self, request: Request) -> Response:
        who = self.me(request)
        with contextlib.closing(self.runs_()) as r:
            items = [i for i in data.inbox_items(r.store) if who.for_tenant(i["tenant"])]
            for i in items:
                refusal = decision_refusal(who, r.get(i["run_id"]), i)
                i["refusal"] = refusal[0] if refusal else None
        return self.page(request, "inbox.html", items=items)

    async def runs(self, request: Request) -> Response:
        q = request.query_params
        filters = {k: (q.get(k) or None) for k in ("status", "workflow", "tenant")}
        with contextlib.closing(self.runs_()) as r:
            who = self.me(request)
            rows = [x for x in r.list_runs(**filters, limit=200) if who.for_tenant(x.tenant)]
            workflows = r.workflows()
        return self.page(request, "runs.html", rows=rows, filters=filters, workflows=workflows)

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        with contextlib.closing(self.runs_()) as r:
            self.visible(request, r, run_id)
            view = data.run_page(r.store, run_id)
        return self.page(request, "run.html", **view)

    async def trace(self, request: Request) -> Response:
        from runner.trace.tree import render_trace, trace_data

        run_id = request.path_params["run_id"]
        with contextlib.closing(self.runs_()) as r:
            self.visible(request, r, run_id)
            text = render_trace(trace_data(r.store, run_id))
        return self.page(request, "trace.html", run_id=run_id, text=text)

    # -- decisions and operations ------------------------------------------------------------
    async def decide(self, request: Request) -> Response:
        """Decide through runs: a Temporal run's workflow is woken, a local run resumed aside."""
        form = await self.form(request)
        run_id, node_id = request.path_params["run_id"], request.path_params["node_id"]
        verb = request.path_params["verb"]
        if verb not in VERBS:  # anything but approve used to reject
            raise NotFound(f"no decision {verb!r}: approve or reject")
        approve = verb == "approve"
        who = self.me(request)
        reason = form.get("reason", "").strip() or None
        with contextlib.closing(self.runs_()) as r:
            # who may decide is settled first: a refusal changes nothing and is audited
            r.authorize_decision(run_id, node_id, who, approve=approve, via="console")
            if not approve and not reason:
                raise FlowrunError("a reason is required to reject")
            approval = r.approval(run_id, node_id)
            schema = approval.get("decision_schema") if approval else None
            decision = None
            if approve:
                try:
                    decision = data.parse_decision(schema, form)
                except data.DecisionError as e:
                    raise FlowrunError(str(e)) from None
            decided = await r.decide(
                run_id, node_id, approve=approve, by=who.name, decision=decision, reason=reason
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
        await self.form(request)
        run_id = request.path_params["run_id"]
        who = self.me(request)
        with contextlib.closing(self.runs_()) as r:
            r.authorize_operation(who, "kill", via="console", run_id=run_id)
            outcome = await r.kill(run_id, by=who.name)
        return RedirectResponse(
            f"/runs/{quote(run_id)}?{urlencode({'note': outcome})}", status_code=303
        )

    async def writes(self, request: Request) -> Response:
        form = await self.form(request)
        state = form.get("state")
        if state not in ("on", "off"):
            raise FlowrunError("writes: state must be on or off")
        who = self.me(request)
        with contextlib.closing(self.runs_()) as r:
            r.authorize_operation(who, f"turn writes {state}", via="console")
            r.set_writes(state == "on", who.name)
        return RedirectResponse(f"/?note=writes_{state}", status_code=303)

    async def undo_confirm(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        with contextlib.closing(self.runs_()) as r:
            self.visible(request, r, run_id)
            view = data.run_page(r.store, run_id)
        return self.page(request, "undo.html", report=None, **view)

    async def undo(self, request: Request) -> Response:
        form = await self.form(request)
        run_id = request.path_params["run_id"]
        who = self.me(request)
        with contextlib.closing(self.runs_()) as r:
            r.authorize_operation(who, "undo", via="console", run_id=run_id)
            if form.get("confirm") != run_id:
                raise FlowrunError(
                    "undo not confirmed", hint="type the run id into the confirmation box"
                )
            report = await r.undo(run_id, by=who.name)
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
    from runner.web.batches import routes as batch_routes

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
        Route("/oidc/login", guard(c.oidc_login), methods=["GET"]),
        Route("/oidc/callback", guard(c.oidc_callback), methods=["GET"]),
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
        *batch_routes(c, guard),  # runner/web/batches.py
    ]
    app = Starlette(routes=routes, middleware=[Middleware(_Gate, console=c)])
    app.state.console = c
    return app


class _TooLarge(Exception):
    """A request body past MAX_FORM_BYTES (raised from `receive`, answered 413 by the gate)."""


class _Gate:
    """Auth, a body size limit and security headers around every request, before any route."""

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
        sid, who = None, None
        found = self.c.sessions.session(request.cookies.get(SESSION_COOKIE))
        if found is not None:
            who = self.c.who(found[1])  # asked on every request: a revocation counts at once
            sid = found[0] if who is not None else None
        scope.setdefault("state", {})["sid"] = sid
        scope["state"]["who"] = who
        method = scope["method"]
        origin = request.headers.get("origin")
        resp: Response | None = None
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            resp = HTMLResponse(f"request too large (over {MAX_FORM_BYTES} bytes)", 413)
        elif method not in ("GET", "HEAD") and origin and origin != _own_origin(request):
            resp = HTMLResponse("forbidden: cross-origin request", status_code=403)
        elif sid is None and not scope["path"].startswith(PUBLIC):
            if method in ("GET", "HEAD"):
                asked = scope["path"] + (f"?{request.url.query}" if request.url.query else "")
                where = "/login" if asked == "/" else "/login?" + urlencode({"next": asked})
                resp = RedirectResponse(where, status_code=303)
            else:
                resp = HTMLResponse("forbidden: log in first", status_code=403)
        if resp is not None:
            await resp(scope, receive, send_headers)
            return
        seen = 0
        started = False

        async def counted() -> Any:
            # a chunked body has no Content-Length to refuse up front: counted as it arrives
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_FORM_BYTES:
                raise _TooLarge
            return message

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_headers(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if started:
                raise
            too_large = HTMLResponse(f"request too large (over {MAX_FORM_BYTES} bytes)", 413)
            await too_large(scope, receive, send_headers)


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"
