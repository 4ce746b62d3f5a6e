"""Approval notices: a message to configured webhooks when a run waits for a person, and when
that wait nears or passes its timeout.

Every way a run parks goes through `runner.runs` (start, resume, a followed decision, on either
backend), which calls `after_park`; `flowrun sweep` and the servers' background loop call
`scan`, which also catches runs parked where nobody was listening (a Temporal worker after a
decision) and timeouts coming up. A notice is claimed in the store before it is sent, so each
(approval, kind, target) goes out once across processes. Sending retries with backoff; a
failure is a `notify_failed` event on the run, never an error of the run. docs/intake.md
describes the file.

    console_url: https://flowrun.example.com
    targets:
      slack: {url_env: SLACK_APPROVALS_URL, format: slack}
      audit: {url: https://audit.example.com/in, format: json, secret_env: AUDIT_SECRET}
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from runner.errors import Diagnostic, FlowrunError, SpecError
from runner.redact import redact
from runner.signing import DELIVERY_HEADER, sign

if TYPE_CHECKING:
    from runner.spec.loader import PathKey, Source
    from runner.store import Store

NOTIFY_ENV = "FLOWRUN_NOTIFY"
NOTIFY_FILE = "notify.yaml"
KINDS = ("waiting", "nearing", "timed_out")
FORMATS = ("slack", "json")
EVENT_HEADER = "X-Flowrun-Event"
TOP_KEYS = ("console_url", "nearing_s", "retries", "backoff_s", "timeout_s", "poll_s", "targets")
TARGET_KEYS = ("url", "url_env", "format", "secret_env", "events")
MAX_PLANNED_CHARS = 2500


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    format: str  # slack | json
    secret: str | None = None
    events: tuple[str, ...] = KINDS


@dataclass(frozen=True)
class NotifyConfig:
    path: str
    console_url: str
    targets: tuple[Target, ...]
    nearing_s: float = 3600.0
    retries: int = 3
    backoff_s: float = 0.5
    timeout_s: float = 5.0
    poll_s: float = 30.0


# -- the file ------------------------------------------------------------------------------------
def config_path(store: Store | None) -> Path | None:
    """$FLOWRUN_NOTIFY, else notify.yaml beside a SQLite store when there is one."""
    env = os.environ.get(NOTIFY_ENV)
    if env:
        return Path(env)
    path = getattr(store, "path", None)
    if isinstance(path, Path):
        beside = path.parent / NOTIFY_FILE
        if beside.is_file():
            return beside
    return None


def load_config(path: str | Path, env: dict[str, str] | None = None) -> NotifyConfig:
    """Read and check a notify file; SpecError lists every problem at its position."""
    from runner.spec.loader import Document, load_file

    src = load_file(path, what=Document("notify file", "console_url, targets, ..."))
    env = dict(os.environ) if env is None else env
    diags: list[Diagnostic] = []

    def err(
        at: PathKey, rule: str, message: str, hint: str | None = None, key: bool = False
    ) -> None:
        diags.append(src.diag(at, rule, message, hint=hint, key=key))

    data = src.data
    if not isinstance(data, dict):
        err((), "notify-shape", "a notify file is a mapping with 'console_url' and 'targets'")
        raise SpecError(diags)
    _known(src, data, TOP_KEYS, (), diags)
    url = data.get("console_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        err(
            ("console_url",),
            "bad-value",
            "'console_url' must be the console's http(s) base URL",
            "e.g. console_url: https://flowrun.example.com",
            key="console_url" not in data,
        )
        url = ""
    nums: dict[str, Any] = {}
    for k, lo, hi, whole in (
        ("nearing_s", 1, 30 * 86400, False),
        ("retries", 1, 10, True),
        ("backoff_s", 0, 60, False),
        ("timeout_s", 0.1, 120, False),
        ("poll_s", 1, 3600, False),
    ):
        if k in data:
            v = data[k]
            ok = not isinstance(v, bool) and isinstance(v, int if whole else int | float)
            if not ok or not lo <= v <= hi:
                err(
                    (k,),
                    "bad-value",
                    f"{k!r} must be a {'whole ' if whole else ''}number from {lo} to {hi}",
                )
            else:
                nums[k] = v
    targets: list[Target] = []
    table = data.get("targets")
    if not isinstance(table, dict) or not table:
        err(
            ("targets",),
            "notify-shape",
            "'targets' must map names to webhooks",
            key="targets" not in data,
        )
    else:
        for name, raw in table.items():
            t = _target(src, env, str(name), raw, diags)
            if t is not None:
                targets.append(t)
    if diags:
        raise SpecError(diags)
    return NotifyConfig(path=src.path, console_url=url.rstrip("/"), targets=tuple(targets), **nums)


def _known(
    src: Source,
    data: dict[str, Any],
    allowed: tuple[str, ...],
    at: PathKey,
    diags: list[Diagnostic],
) -> None:
    for k in data:
        if k not in allowed:
            near = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f"did you mean {near[0]!r}?" if near else "keys: " + ", ".join(allowed)
            diags.append(
                src.diag((*at, k), "unknown-key", f"unknown key {k!r}", hint=hint, key=True)
            )


def _target(
    src: Source, env: dict[str, str], name: str, raw: Any, diags: list[Diagnostic]
) -> Target | None:
    at: PathKey = ("targets", name)
    before = len(diags)

    def err(where: PathKey, rule: str, message: str, hint: str | None = None) -> None:
        diags.append(src.diag(where, rule, message, hint=hint))

    if not isinstance(raw, dict):
        err(at, "notify-shape", f"target {name!r} must be a mapping with 'url' or 'url_env'")
        return None
    _known(src, raw, TARGET_KEYS, at, diags)
    fmt = raw.get("format", "json")
    if fmt not in FORMATS:
        err((*at, "format"), "bad-value", f"unknown format {fmt!r}", "slack or json")
    url: str | None = None
    if ("url" in raw) == ("url_env" in raw):
        err(
            at,
            "missing-key",
            f"target {name!r} needs one of 'url' and 'url_env'",
            "a Slack webhook URL is a secret: put it in an environment variable (url_env)",
        )
    elif "url" in raw:
        url = raw["url"] if isinstance(raw["url"], str) else None
    else:
        var = raw["url_env"]
        url = env.get(var) if isinstance(var, str) else None
        if not url:
            err((*at, "url_env"), "notify-env-unset", f"environment variable {var!r} is not set")
            url = None
    if url is not None and not url.startswith(("http://", "https://")):
        err(
            (*at, "url" if "url" in raw else "url_env"),
            "bad-value",
            "a target URL must start with http:// or https://",
        )
    secret = None
    if "secret_env" in raw:
        var = raw["secret_env"]
        secret = env.get(var) if isinstance(var, str) else None
        if not secret:
            err((*at, "secret_env"), "notify-env-unset", f"environment variable {var!r} is not set")
        elif len(secret) < 16:
            err(
                (*at, "secret_env"),
                "notify-secret-weak",
                f"the secret in {var!r} has {len(secret)} characters; use at least 16",
            )
    events = raw.get("events", list(KINDS))
    if not isinstance(events, list) or not events or any(e not in KINDS for e in events):
        err((*at, "events"), "bad-value", "'events' lists some of: " + ", ".join(KINDS))
        events = list(KINDS)
    if len(diags) > before or url is None:
        return None
    return Target(name=name, url=url, format=fmt, secret=secret, events=tuple(events))


def configured(store: Store) -> NotifyConfig | None:
    """The notify file that applies to `store`, or None; a broken file is an error here."""
    path = config_path(store)
    return load_config(path) if path is not None else None


# -- messages ------------------------------------------------------------------------------------
def approval_url(config: NotifyConfig, run_id: str, node_id: str) -> str:
    """The console page where the approval is decided (the inbox, at this approval)."""
    return f"{config.console_url}/inbox#approval-{quote(run_id)}-{quote(node_id, safe='')}"


def run_url(config: NotifyConfig, run_id: str) -> str:
    return f"{config.console_url}/runs/{quote(run_id)}"


_TITLES = {
    "waiting": "Approval waiting",
    "nearing": "Approval nearing its timeout",
    "timed_out": "Approval timed out",
}


def message(
    config: NotifyConfig, store: Store, approval: dict[str, Any], kind: str
) -> dict[str, Any]:
    """The generic form of a notice: what an approver needs, every run value redacted."""
    run_id, node_id = approval["run_id"], approval["node_id"]
    row = store.get_run(run_id)
    planned = _planned(store, run_id)
    return {
        "event": f"approval.{kind}",
        "title": _TITLES[kind],
        "run_id": run_id,
        "node_id": node_id,
        "workflow": row.workflow,
        "tenant": row.tenant,
        "started_by": row.actor,
        "summary": redact(approval.get("summary") or "", pii=True),
        "assignees": approval.get("assignees") or [],
        "requested_at": approval.get("requested_at"),
        "timeout_at": approval.get("timeout_at"),
        "on_timeout": approval.get("on_timeout"),
        "planned_changes": redact(planned, pii=True),
        "approval_url": approval_url(config, run_id, node_id),
        "run_url": run_url(config, run_id),
        "sent_at": round(time.time(), 3),
    }


def _planned(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The run's dry-run writes so far: a node's `planned` detail and `planned_change` events,
    each change once (a write records both)."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(node_id: str, change: Any, tool: str | None) -> None:
        key = (node_id, json.dumps(change, sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            out.append({"node_id": node_id, "tool": tool, "change": change})

    for e in store.events(run_id, "planned_change"):
        data = e["data"] or {}
        add(e["node_id"], data.get("change", data), data.get("tool"))
    for node_id, r in store.node_results(run_id).items():
        planned = (r.get("detail") or {}).get("planned")
        if planned is not None:
            add(node_id, planned, None)
    return out


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(msg: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (text for notifications, blocks for the channel)."""
    who = f" for {', '.join(msg['assignees'])}" if msg["assignees"] else ""
    head = (
        f"*{_mrkdwn(msg['title'])}*: `{_mrkdwn(msg['workflow'])}` run `{_mrkdwn(msg['run_id'])}`"
        f", node `{_mrkdwn(msg['node_id'])}`{_mrkdwn(who)}"
    )
    if msg.get("timeout_at"):
        head += f"\ntimes out <!date^{int(msg['timeout_at'])}^{{date_short_pretty}} {{time}}|"
        head += f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(msg['timeout_at']))}>"
        head += f" ({_mrkdwn(str(msg.get('on_timeout') or 'escalate'))} then)"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": head}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(msg["summary"] or "-")}},
    ]
    if msg["planned_changes"]:
        text = json.dumps(msg["planned_changes"], indent=1, sort_keys=True, default=str)
        if len(text) > MAX_PLANNED_CHARS:
            text = text[:MAX_PLANNED_CHARS] + "\n…"
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Planned changes*\n```" + _mrkdwn(text) + "```",
                },
            }
        )
    blocks.append(
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Review in the console"},
                    "url": msg["approval_url"],
                }
            ],
        }
    )
    text = f"{msg['title']}: {msg['workflow']} run {msg['run_id']} <{msg['approval_url']}|review>"
    return {"text": text, "blocks": blocks}


# -- sending -------------------------------------------------------------------------------------
Post = Callable[[str, bytes, dict[str, str], float], int]


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:  # a configured http(s) URL
        return int(r.status)


def send(
    config: NotifyConfig,
    target: Target,
    msg: dict[str, Any],
    *,
    post: Post = _post,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, str | None]:
    """POST one notice with retries and exponential backoff: (attempts, error or None). The
    error never holds the URL (a Slack URL is a secret)."""
    payload = slack(msg) if target.format == "slack" else msg
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    error: str | None = None
    for attempt in range(1, config.retries + 1):
        headers = {"Content-Type": "application/json", "User-Agent": "flowrun-notify"}
        if target.format == "json":
            headers[EVENT_HEADER] = msg["event"]
            headers[DELIVERY_HEADER] = f"{msg['run_id']}:{msg['node_id']}:{msg['event']}"
            if target.secret:
                headers.update(sign(target.secret, body))
        try:
            status = post(target.url, body, headers, config.timeout_s)
            if 200 <= status < 300:
                return attempt, None
            error = f"HTTP {status}"
        except urllib.error.HTTPError as e:
            error = f"HTTP {e.code}"
            if 400 <= e.code < 500 and e.code not in (408, 429):
                return attempt, error  # the receiver refuses this message: trying again won't help
        except (OSError, ValueError) as e:
            error = type(e).__name__ + (
                f": {e.reason}" if isinstance(e, urllib.error.URLError) else ""
            )
        if attempt < config.retries:
            sleep(config.backoff_s * 2 ** (attempt - 1))
    return config.retries, error


def notify_one(
    config: NotifyConfig, store: Store, approval: dict[str, Any], kind: str, *, post: Post = _post
) -> None:
    """Send one kind of notice of one approval to every target that wants it, once each."""
    msg: dict[str, Any] | None = None
    run_id, node_id = approval["run_id"], approval["node_id"]
    for target in config.targets:
        if kind not in target.events or not store.notice_claim(run_id, node_id, kind, target.name):
            continue
        if msg is None:
            msg = message(config, store, approval, kind)
        attempts, error = send(config, target, msg, post=post)
        store.notice_done(
            run_id,
            node_id,
            kind,
            target.name,
            status="sent" if error is None else "failed",
            attempts=attempts,
            error=error,
        )
        if error is None:
            store.event(run_id, "approval_notified", node_id, target=target.name, kind=kind)
        else:
            store.event(
                run_id,
                "notify_failed",
                node_id,
                target=target.name,
                kind=kind,
                attempts=attempts,
                error=error,
            )


def _safely(store: Store, run_id: str | None, work: Callable[[NotifyConfig], None]) -> None:
    """Notices never fail what called them: a broken file or receiver is an event."""
    try:
        config = configured(store)
        if config is None:
            return
        work(config)
    except Exception as e:  # a notice must never fail a run
        text = e.render() if isinstance(e, FlowrunError) else f"{type(e).__name__}: {e}"
        with contextlib.suppress(Exception):
            store.event(run_id or "*", "notify_failed", error=text)


def after_park(store: Store, run_id: str) -> None:
    """The run just parked: tell the targets about each approval it waits on."""

    def work(config: NotifyConfig) -> None:
        for a in store.inbox():
            if a["run_id"] == run_id:
                notify_one(config, store, a, "waiting")

    _safely(store, run_id, work)


def nearing_window(config: NotifyConfig, approval: dict[str, Any]) -> float:
    """How long before its timeout an approval is "nearing" it: `nearing_s`, but at most the
    last quarter of its wait (a 10-minute approval is not nearing its end when it starts)."""
    due = float(approval["timeout_at"])
    asked = approval.get("requested_at")
    wait = due - float(asked) if asked is not None else 0.0
    return min(config.nearing_s, max(wait, 0.0) / 4)


def scan(store: Store, *, now: float | None = None) -> None:
    """Every waiting approval: its `waiting` notice if none went out yet, and `nearing` or
    `timed_out` when its timeout is close or past (`flowrun sweep`, the servers' loop)."""

    def work(config: NotifyConfig) -> None:
        t = time.time() if now is None else now
        for a in store.inbox():
            notify_one(config, store, a, "waiting")
            due = a.get("timeout_at")
            if due:
                if due <= t:
                    notify_one(config, store, a, "timed_out")
                elif due - t <= nearing_window(config, a):
                    notify_one(config, store, a, "nearing")

    _safely(store, None, work)


class Notifier:
    """`scan` every `poll_s` seconds in a thread of its own (flowrun serve, flowrun intake)."""

    def __init__(self, target: str, poll_s: float) -> None:
        self.target = target
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="flowrun-notify")

    @classmethod
    def start_if_configured(cls, target: str) -> Notifier | None:
        """A running notifier when a notify file applies to the store (checked now: a broken
        file stops the server with its diagnostics)."""
        from runner.store import open_store

        store = open_store(target, create=False)
        try:
            config = configured(store)
        finally:
            store.close()
        if config is None:
            return None
        n = cls(target, config.poll_s)
        n._thread.start()
        return n

    def _loop(self) -> None:
        from runner.store import open_store

        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                store = open_store(self.target, create=False)
                try:
                    scan(store)
                finally:
                    store.close()
            self._stop.wait(self.poll_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
