"""The run store's interface: what every implementation (SQLite, PostgreSQL) offers.

Nothing outside runner/store/ runs SQL: every question asked of the store is a method here.
`runner.store.open_store(target)` opens the implementation `target` names (a path: SQLite; a
`postgresql://` or `postgres://` URL: PostgreSQL).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import ExitCode, FlowrunError
from runner.jsontext import compact_encoder
from runner.spec.budgets import CallScope
from runner.store.seal import seal_encoded, unseal_json

DEFAULT_STORE = ".flowrun/flowrun.db"
# every table of a store, in an order a copy can insert them in
TABLES = (
    "runs",
    "bundles",
    "node_results",
    "events",
    "calls",
    "ledger",
    "approvals",
    "switches",
    "spend",
    "batches",
    "batch_lines",
    "identities",
    "deliveries",
    "rate_windows",
    "notices",
    "autonomy",
    "eval_results",
    "budgets",
    "rate_hits",
    "response_cache",
)
# autonomy levels (runner/engine/autonomy.py), loosest last; `autonomous` is what the spec allows
AUTONOMY_LEVELS = ("dry_run", "approval", "autonomous")
URL_SCHEMES = ("postgresql://", "postgres://")


class StoreError(FlowrunError):
    """The store cannot be used: missing, corrupt, not ours, or from a newer flowrun."""

    exit_code = ExitCode.INVALID


class NotFound(FlowrunError):
    exit_code = ExitCode.INVALID


class DuplicateRun(StoreError):
    """A run with this id exists already."""


def store_target(explicit: str | os.PathLike[str] | None = None) -> str:
    """The store to open: `explicit`, else $FLOWRUN_STORE, else .flowrun/flowrun.db."""
    return str(explicit or os.environ.get("FLOWRUN_STORE") or DEFAULT_STORE)


def is_url(target: str | os.PathLike[str]) -> bool:
    return isinstance(target, str) and target.lower().startswith(URL_SCHEMES)


def store_path(explicit: str | None = None) -> Path:
    """The SQLite file a path-valued target names (use `store_target` for either kind)."""
    return Path(store_target(explicit))


# perf (issues 11, 19): one encoder for every payload (~7 rows a node), made once
_encode = compact_encoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def dumps(value: Any) -> str:
    """Every payload the store writes; secrets and personal data in it are sealed
    (runner/store/seal.py)."""
    return seal_encoded(value, _encode)


def loads(text: str | None) -> Any:
    """Every payload the store reads, its sealed values opened: the engine sees real values."""
    return None if text is None else json.loads(unseal_json(text))


@dataclass(frozen=True)
class RunRow:
    run_id: str
    workflow: str
    spec_path: str
    spec_dir: str
    spec_text: str
    spec_digest: str
    profile: str | None
    inputs: dict[str, Any]
    responses_path: str | None
    options: dict[str, Any] | None
    tenant: str | None
    actor: str | None
    status: str
    reason: str | None
    outputs: dict[str, Any] | None
    cost_usd: float
    tokens: int
    llm_calls: int
    tool_calls: int
    duration_s: float
    pid: int | None
    host: str | None
    kill_requested: bool
    created_at: float
    updated_at: float
    finished_at: float | None
    bundle_digest: str | None = None  # None: a run from before plan bundles (schema 3)


@dataclass(frozen=True)
class FinishedRun:
    """What `flowrun stats` and the console's histograms read of a finished run."""

    run_id: str
    status: str
    duration_s: float
    cost_usd: float


class Store(ABC):
    """Runs, node results, events, call records, bundles, the ledger, approvals and switches.

    Group commit: writes marked *deferred* below may be queued and committed together; `flush`
    commits the queue now, `barrier` waits (in an event loop) until every row queued so far is
    committed. A write's ledger intent, an approval request, a decision, a kill and the writes
    switch commit before they return, with every row queued before them.

    Attributes every implementation sets: `path`, a local file whose folder holds what stays on
    this machine (transcripts); `target`, what opens this same store again from any process
    (an absolute path or a URL without its password); `location`, how messages name it.
    """

    durable = True  # runs recorded here may write live
    path: Path
    target: str
    location: str

    @abstractmethod
    def __init__(self, target: str | os.PathLike[str], *, create: bool = True) -> None:
        """Open the store at `target`; `create`: make it when it does not exist yet (else a
        StoreError), migrate an older schema; a newer schema or foreign data is a StoreError."""

    # -- commits ---------------------------------------------------------------------------
    @abstractmethod
    def flush(self) -> None: ...

    @abstractmethod
    async def barrier(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- runs ------------------------------------------------------------------------------
    @abstractmethod
    def create_run(self, *, bundle: dict[str, Any] | None = None, **row: Any) -> None: ...

    @abstractmethod
    def update_run(self, run_id: str, **fields: Any) -> None: ...

    @abstractmethod
    def finish_run(self, run_id: str, *, add_duration_s: float, **fields: Any) -> None: ...

    @abstractmethod
    def run_ended(self, run_id: str) -> None: ...

    @abstractmethod
    def claim_run(self, run_id: str, *, was_status: str, was_pid: int | None, host: str) -> bool:
        """Mark the run running in this process (its pid, on `host`) if it is still in
        `was_status` with `was_pid` (None: no process); False when another process took it
        first. Atomic across processes and machines."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRow: ...

    @abstractmethod
    def get_bundle(self, digest: str) -> dict[str, Any]: ...

    @abstractmethod
    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        tenant: str | None = None,
        limit: int = 50,
    ) -> list[RunRow]: ...

    @abstractmethod
    def workflows(self) -> list[str]:
        """Names of the workflows that have runs here, sorted."""

    @abstractmethod
    def status_counts(self) -> dict[str, int]:
        """How many runs are in each status (statuses without runs left out)."""

    @abstractmethod
    def finished_runs(
        self,
        statuses: Sequence[str],
        *,
        workflow: str | None = None,
        tenant: str | None = None,
        since: float | None = None,
    ) -> list[FinishedRun]:
        """The runs in one of `statuses` (of a workflow, a tenant, created since a time)."""

    @abstractmethod
    def tool_call_counts(self, run_ids: Sequence[str]) -> tuple[int, int]:
        """(tool calls, tool calls that failed) of these runs."""

    @abstractmethod
    def runs_with_event(self, type_: str, run_ids: Sequence[str]) -> int:
        """How many of these runs have at least one event of this type."""

    @abstractmethod
    def request_kill(self, run_id: str, by: str | None) -> None: ...

    @abstractmethod
    def kill_requested(self, run_id: str) -> bool: ...

    # -- node results, events, calls -------------------------------------------------------
    @abstractmethod
    def save_node(self, run_id: str, node_id: str, status: str, result: dict[str, Any]) -> None: ...

    @abstractmethod
    def node_results(self, run_id: str) -> dict[str, dict[str, Any]]: ...

    @abstractmethod
    def event(self, run_id: str, type_: str, node_id: str | None = None, **data: Any) -> None: ...

    @abstractmethod
    def events(
        self, run_id: str | None = None, type_: str | None = None
    ) -> list[dict[str, Any]]: ...

    @abstractmethod
    def record_call(self, **row: Any) -> None: ...

    @abstractmethod
    def calls(self, run_id: str) -> list[dict[str, Any]]: ...

    # -- the idempotency ledger ------------------------------------------------------------
    @abstractmethod
    def ledger_get(self, key: str, *, run_id: str | None = None) -> dict[str, Any] | None: ...

    @abstractmethod
    def ledger_intent(self, key: str, *, defer: bool = False, **row: Any) -> None: ...

    @abstractmethod
    def ledger_claim(self, key: str, **row: Any) -> bool:
        """The intent of a write that is not idempotent, as one atomic claim of `key`: True
        (committed) when no row has the key, its row failed, or its row is this run's own (a
        retry, a resume); False, nothing written, when another run holds the key (its call is
        in flight or done). Of processes racing for a key, on any machines, one wins."""

    @abstractmethod
    def ledger_done(self, key: str, result: Any, *, defer: bool = False) -> None: ...

    @abstractmethod
    def ledger_failed(self, key: str, error: str) -> None: ...

    @abstractmethod
    def ledger_for_run(self, run_id: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def ledger_mark_undone(self, key: str) -> None: ...

    # -- model-call spend (runner/engine/budget.py) ----------------------------------------
    @abstractmethod
    def spend_reserve(
        self,
        run_id: str,
        *,
        caps: dict[str, float],
        node_id: str,
        at: str,
        model: str,
        usd: float,
        input_tokens: int,
        output_tokens: int,
        call: CallScope | None = None,
    ) -> tuple[int | None, dict[str, float]]:
        """Reserve one model call for a run, atomically against its caps (`usd`, `tokens`,
        `llm_calls`) across processes, committed before the call is made. Returns the row id
        (None: refused, no row) and the run's counted totals before this call.

        With `call` (who it is for: tenant, workflow; `kind` "tool" with its tool: a billed
        tool call, `model` its tool name, no tokens), the same transaction also reserves it
        against every ceiling of the budgets set in force (runner/spec/budgets.py) that selects
        it, and raises CeilingReached, nothing written, for the first it would pass."""

    @abstractmethod
    def spend_settle(
        self,
        row_id: int,
        status: str,
        *,
        usd: float | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        model: str | None = None,
    ) -> None:
        """A reserved call's end: `billed` (what the provider billed), `cancelled` (cut off in
        flight; it keeps its reservation) or `released`."""

    @abstractmethod
    def spend_by_node(
        self, run_id: str, node_id: str | None = None
    ) -> dict[str, dict[str, Any]]: ...

    @abstractmethod
    def spend_rows(self, run_id: str) -> list[dict[str, Any]]: ...

    # -- batches (runner/runs/batch.py) -----------------------------------------------------
    @abstractmethod
    def batch_create(self, batch_id: str, *, lines: Sequence[dict[str, Any]], **row: Any) -> None:
        """Record a batch (`workflow`, `spec_path`, `data_path`, `options`, `status`, `pid`,
        `host`) with every one of its lines (`line`, `inputs`, `status`, `reason`), all in one
        transaction; a batch with this id already there is a DuplicateRun."""

    @abstractmethod
    def batch_get(self, batch_id: str) -> dict[str, Any]:
        """A batch's row (NotFound when there is none)."""

    @abstractmethod
    def batch_update(self, batch_id: str, **fields: Any) -> None:
        """Set a batch's `status`, `pid`, `host`, `options` or `finished_at`."""

    @abstractmethod
    def list_batches(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """Batches, newest first."""

    @abstractmethod
    def batch_line_set(self, batch_id: str, line: int, **fields: Any) -> None:
        """Set a line's `run_id`, `status` or `reason` (the run→batch link)."""

    @abstractmethod
    def batch_lines(self, batch_id: str) -> list[dict[str, Any]]:
        """A batch's lines in line order, each with its inputs, run id, status and reason."""

    # -- approvals -------------------------------------------------------------------------
    @abstractmethod
    def approval_get(self, run_id: str, node_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def approval_request(self, run_id: str, node_id: str, **row: Any) -> None: ...

    @abstractmethod
    def approval_decide(
        self,
        run_id: str,
        node_id: str,
        *,
        status: str,
        by: str,
        decision: Any = None,
        reason: str | None = None,
    ) -> None: ...

    @abstractmethod
    def inbox(self) -> list[dict[str, Any]]: ...

    # -- copies (`flowrun store migrate`) ---------------------------------------------------
    @abstractmethod
    def row_counts(self) -> dict[str, int]:
        """How many rows each table in TABLES holds."""

    @abstractmethod
    def export_rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of `table` as stored (sealed values stay sealed), in insertion order."""

    @abstractmethod
    def import_rows(self, tables: dict[str, list[dict[str, Any]]]) -> None:
        """Insert rows as `export_rows` gave them (ids kept), every table in one transaction:
        all of them are written or none."""

    # -- switches --------------------------------------------------------------------------
    @abstractmethod
    def writes_enabled(self) -> bool: ...

    @abstractmethod
    def set_writes(self, on: bool, by: str | None) -> None: ...

    # -- identities (runner/runs/identity.py: who may act) -----------------------------------
    @abstractmethod
    def identity_add(self, name: str, *, token_sha256: str, by: str | None, **row: Any) -> None:
        """Record a user or client (`kind`, `roles`, `tenants`, `scopes`, `live`) with the
        SHA-256 of its token, and an `identity_added` event; a name taken (revoked or not) is
        a DuplicateRun."""

    @abstractmethod
    def identity_get(self, name: str) -> dict[str, Any] | None:
        """The identity named `name`, revoked or not (`revoked_at` says)."""

    @abstractmethod
    def identity_by_token(self, token_sha256: str) -> dict[str, Any] | None:
        """The unrevoked identity whose token has this SHA-256, read from the store now."""

    @abstractmethod
    def identities(self) -> list[dict[str, Any]]:
        """Every identity, revoked ones too, by name."""

    @abstractmethod
    def identity_revoke(self, name: str, by: str | None) -> bool:
        """Revoke an identity at once (its token and sessions stop working), with an
        `identity_revoked` event; False when there is no unrevoked identity by that name."""

    # -- intake and notifications (runner/runs/intake.py, runner/runs/notify.py) -------------
    @abstractmethod
    def delivery_claim(self, hook: str, delivery_id: str, run_id: str) -> tuple[str, bool]:
        """Record once, atomically, that delivery `delivery_id` of `hook` starts `run_id`:
        (the run id on record, whether this call recorded it). A replayed delivery gets the
        first delivery's run id and `False`, also when both arrive at the same moment."""

    @abstractmethod
    def delivery_release(self, hook: str, delivery_id: str, run_id: str) -> None:
        """Forget a claim whose run could not be created, so that the sender's retry can."""

    @abstractmethod
    def rate_take(self, key: str, *, limit: int, window_s: float, now: float) -> float:
        """Count one request against `key` in the fixed window of `window_s` seconds holding
        `now`: 0.0 when it is within `limit`, else the seconds until the window ends."""

    @abstractmethod
    def notice_claim(self, run_id: str, node_id: str, kind: str, target: str) -> bool:
        """Take the sending of one notice (approval `node_id` of `run_id`, `kind`, to `target`)
        once across processes: True for the one caller that should send it."""

    @abstractmethod
    def notice_done(
        self,
        run_id: str,
        node_id: str,
        kind: str,
        target: str,
        *,
        status: str,
        attempts: int,
        error: str | None,
    ) -> None:
        """Record how a claimed notice ended: `sent` or `failed`, after `attempts` tries."""

    @abstractmethod
    def notices(self, run_id: str) -> list[dict[str, Any]]:
        """The notices of a run's approvals, oldest first."""

    # -- readiness and autonomy (runner/runs/readiness.py, runner/engine/autonomy.py) -------
    # A *window* is the runs of one workflow created since a time (of one tenant, or all); the
    # window_* methods return the evidence those runs left.
    @abstractmethod
    def eval_record(
        self, workflow: str, *, spec_digest: str | None, passed: bool, summary: dict[str, Any]
    ) -> int:
        """Record one `flowrun eval --record` result; returns its id."""

    @abstractmethod
    def eval_results(self, workflow: str, *, limit: int = 10) -> list[dict[str, Any]]:
        """A workflow's recorded eval results, newest first (`id`, `workflow`, `spec_digest`,
        `created_at`, `passed`, `summary`)."""

    @abstractmethod
    def window_runs(
        self, workflow: str, *, tenant: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """The window's runs: `run_id`, `status`, `cost_usd`, `duration_s`, `created_at`,
        `tenant`."""

    @abstractmethod
    def window_approvals(
        self, workflow: str, *, tenant: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """The approvals of the window's runs: `run_id`, `node_id`, `status`, `requested_at`,
        `decided_at`, `timeout_at`."""

    @abstractmethod
    def window_writes(
        self, workflow: str, *, tenant: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """The ledger rows of write tools of the window's runs: `key`, `run_id`, `node_id`,
        `tool`, `status`, `undone` (bool), `created_at`."""

    @abstractmethod
    def window_events(
        self,
        workflow: str,
        types: Sequence[str],
        *,
        tenant: str | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        """The events of these types of the window's runs, oldest first (as `events`)."""

    @abstractmethod
    def window_calls(
        self,
        workflow: str,
        *,
        kind: str,
        tenant: str | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        """The call records of this kind (`tool`, `llm`) of the window's runs: `run_id`,
        `node_id`, `name`, `data`, `error`, `trace_id`."""

    @abstractmethod
    def tool_rates(
        self, workflow: str, tool: str, *, tenant: str | None = None, since: float | None = None
    ) -> tuple[int, int, int, int]:
        """A write tool's evidence in the window, counted by the database: (completed live
        writes, of them undone, policy decisions on the tool by the workflow's own policies,
        of them denied)."""

    @abstractmethod
    def autonomy_rows(self, workflow: str | None = None) -> list[dict[str, Any]]:
        """Every recorded autonomy level (of a workflow): `workflow`, `tool`, `tenant` ('' for
        every tenant), `level`, `changed_by`, `changed_at`, `reason`."""

    @abstractmethod
    def autonomy_level(self, workflow: str, tool: str, tenant: str | None) -> dict[str, Any] | None:
        """The level that governs a tool's writes for a tenant: the tenant's own row, else the
        row for every tenant, else None (the spec alone decides)."""

    @abstractmethod
    def autonomy_set(
        self,
        workflow: str,
        tool: str,
        tenant: str | None,
        level: str,
        *,
        by: str | None,
        reason: str | None,
        only_if: str | None = None,
        **audit: Any,
    ) -> bool:
        """Set a tool's level (tenant None: every tenant) and record an `autonomy_changed` audit
        event (run id '*') with `audit`, in one transaction. With `only_if`, only when the row
        being set still holds that level ('': when there is no such row yet), so that demotions
        racing in several processes happen once: False when it does not, nothing written."""

    # -- spend and rate control across runs (issue 23; docs/budgets.md) ----------------------
    @abstractmethod
    def budgets_set(self, body: dict[str, Any], *, text: str, source: str, by: str | None) -> int:
        """Put a budgets set in force (a new version; earlier ones are kept): every process's
        next reservation obeys it. Returns its version."""

    @abstractmethod
    def budgets_get(self) -> dict[str, Any] | None:
        """The set in force: `version`, `body` (the file as JSON), `text`, `source`, `set_by`,
        `set_at`; None when none was ever set."""

    @abstractmethod
    def spend_totals(self, bound: dict[str, str], since: float) -> dict[str, float]:
        """What spend rows selected by `bound` (`tenant`, `workflow`, `tool`) count since
        `since`: `usd`, `tokens`, `llm_calls`, `tool_calls` (as a ceiling counts them)."""

    @abstractmethod
    def spend_values(self, key: str, since: float) -> list[str]:
        """The distinct tenants, workflows or tools (`key`) of spend rows since `since`."""

    @abstractmethod
    def rate_acquire(self, key: str, *, amount: int, limit: int, per: float) -> float:
        """Take `amount` under a sliding-window rate limit (`limit` per `per` seconds) shared
        by every process, in one transaction: 0.0 when taken, else the seconds until there is
        room (nothing taken)."""

    @abstractmethod
    def cache_get(self, key: str) -> dict[str, Any] | None:
        """A cached model answer (`response`, `model`, `tenant`, `created_at`, `hits`), its
        hit counted; None when there is none."""

    @abstractmethod
    def cache_put(self, key: str, *, tenant: str | None, model: str, response: Any) -> None:
        """Keep a model answer under `key` (replacing one kept before: an expired answer)."""

    @abstractmethod
    def cache_stats(self, tenant: str | None = None) -> dict[str, int]:
        """`entries` and `hits` of the response cache (one tenant's with `tenant`)."""
