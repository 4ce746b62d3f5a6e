"""The SQLite run store: WAL mode, append-only run records, approvals, the idempotency ledger."""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from runner.spec.budgets import CallScope
from runner.store import limits
from runner.store.base import (
    TABLES,
    DuplicateRun,
    FinishedRun,
    NotFound,
    RunRow,
    Store,
    StoreError,
    dumps,
    loads,
)
from runner.store.seal import (
    private_dir,
    private_file,
    seal,
    unseal_text,
    use_key_beside,
)

SCHEMA_VERSION = 9
APP_ID = 0x464C5752  # "FLWR": PRAGMA application_id marks a store as ours
BUSY_TIMEOUT_MS = 30_000
# group commit: the longest a deferred row waits for its transaction when nothing else (a node
# starting, a write, a read of its table, the run's end) commits it sooner
GROUP_COMMIT_S = 0.02

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        spec_path TEXT NOT NULL,
        spec_dir TEXT NOT NULL,
        spec_text TEXT NOT NULL,
        spec_digest TEXT NOT NULL,
        profile TEXT,
        inputs TEXT NOT NULL,
        responses_path TEXT,
        options TEXT,
        tenant TEXT,
        actor TEXT,
        status TEXT NOT NULL,
        reason TEXT,
        outputs TEXT,
        cost_usd REAL NOT NULL DEFAULT 0,
        tokens INTEGER NOT NULL DEFAULT 0,
        llm_calls INTEGER NOT NULL DEFAULT 0,
        tool_calls INTEGER NOT NULL DEFAULT 0,
        duration_s REAL NOT NULL DEFAULT 0,
        pid INTEGER,
        host TEXT,
        kill_requested INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX runs_status ON runs(status, created_at);
    CREATE INDEX runs_workflow ON runs(workflow, created_at);
    CREATE TABLE node_results (
        run_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        status TEXT NOT NULL,
        result TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (run_id, node_id, seq)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        ts REAL NOT NULL,
        type TEXT NOT NULL,
        node_id TEXT,
        data TEXT
    );
    CREATE INDEX events_run ON events(run_id, id);
    CREATE TABLE approvals (
        run_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        status TEXT NOT NULL,
        summary TEXT,
        assignees TEXT,
        decision_schema TEXT,
        requested_at REAL NOT NULL,
        timeout_at REAL,
        on_timeout TEXT,
        decided_by TEXT,
        decided_at REAL,
        decision TEXT,
        reason TEXT,
        PRIMARY KEY (run_id, node_id)
    );
    CREATE INDEX approvals_status ON approvals(status, requested_at);
    CREATE TABLE ledger (
        key TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        tool TEXT NOT NULL,
        effect TEXT NOT NULL,
        args TEXT NOT NULL,
        status TEXT NOT NULL,
        result TEXT,
        error TEXT,
        compensate TEXT,
        spec_dir TEXT,
        undone INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        done_seq INTEGER
    );
    CREATE INDEX ledger_run ON ledger(run_id, done_seq);
    CREATE TABLE switches (
        name TEXT PRIMARY KEY, value TEXT NOT NULL, changed_by TEXT, changed_at REAL
    );
    """,
    # every model and tool call as made: what `flowrun trace`, `stats` and `replay` read
    2: """
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        idx INTEGER,
        attempt INTEGER NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        data TEXT NOT NULL,
        error TEXT,
        started_at REAL NOT NULL,
        duration_s REAL NOT NULL
    );
    CREATE INDEX calls_run ON calls(run_id, id);
    """,
    # plan bundles (runner/plan/bundle.py): every file a run was compiled from, by digest
    3: """
    CREATE TABLE bundles (
        digest TEXT PRIMARY KEY,
        entry TEXT NOT NULL,
        files TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    ALTER TABLE runs ADD COLUMN bundle_digest TEXT;
    """,
    # model-call spend (runner/engine/budget.py): one row per call, reserved before it is made
    # and settled after; what a run's budget and totals count across crashes and processes
    4: """
    CREATE TABLE IF NOT EXISTS spend (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        at TEXT NOT NULL,
        model TEXT NOT NULL,
        status TEXT NOT NULL,
        usd REAL NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        reserved_usd REAL NOT NULL,
        reserved_tokens INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS spend_run ON spend(run_id, node_id);
    """,
    # batch runs (runner/runs/batch.py): a batch and its lines, each line linked to its run
    5: """
    CREATE TABLE IF NOT EXISTS batches (
        batch_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        spec_path TEXT NOT NULL,
        data_path TEXT NOT NULL,
        options TEXT NOT NULL,
        total INTEGER NOT NULL,
        status TEXT NOT NULL,
        pid INTEGER,
        host TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX IF NOT EXISTS batches_created ON batches(created_at);
    CREATE TABLE IF NOT EXISTS batch_lines (
        batch_id TEXT NOT NULL,
        line INTEGER NOT NULL,
        inputs TEXT,
        run_id TEXT,
        status TEXT NOT NULL,
        reason TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (batch_id, line)
    );
    CREATE INDEX IF NOT EXISTS batch_lines_run ON batch_lines(run_id);
    """,
    # identities (runner/runs/identity.py): users and clients with a hashed token each; an
    # approval records whether the run's own requester may decide it
    6: """
    CREATE TABLE IF NOT EXISTS identities (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        roles TEXT NOT NULL,
        tenants TEXT NOT NULL,
        scopes TEXT NOT NULL,
        live INTEGER NOT NULL DEFAULT 0,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        created_by TEXT,
        revoked_at REAL,
        revoked_by TEXT
    );
    ALTER TABLE approvals ADD COLUMN allow_self INTEGER NOT NULL DEFAULT 0;
    """,
    # webhook intake and approval notices (runner/runs/intake.py, runner/runs/notify.py)
    7: """
    CREATE TABLE IF NOT EXISTS deliveries (
        hook TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (hook, delivery_id)
    );
    CREATE TABLE IF NOT EXISTS rate_windows (
        key TEXT PRIMARY KEY,
        window_start REAL NOT NULL,
        count INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS notices (
        run_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (run_id, node_id, kind, target)
    );
    """,
    # readiness and autonomy (runner/runs/readiness.py): recorded eval results, and the
    # autonomy level of a workflow's tool (tenant '' for every tenant)
    8: """
    CREATE TABLE IF NOT EXISTS autonomy (
        workflow TEXT NOT NULL,
        tool TEXT NOT NULL,
        tenant TEXT NOT NULL,
        level TEXT NOT NULL,
        changed_by TEXT,
        changed_at REAL NOT NULL,
        reason TEXT,
        PRIMARY KEY (workflow, tool, tenant)
    );
    CREATE TABLE IF NOT EXISTS eval_results (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        workflow TEXT NOT NULL,
        spec_digest TEXT,
        created_at REAL NOT NULL,
        passed INTEGER NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS eval_results_workflow ON eval_results(workflow, id);
    ALTER TABLE calls ADD COLUMN trace_id TEXT;
    """,
    # spend and rate control across runs (runner/store/limits.py, docs/budgets.md): spend rows
    # carry who they are for (tenant, workflow) and what (a model call, or a billed tool call),
    # so ceilings over many runs add them up; budgets sets, rate-limit hits, the response cache
    9: """
    ALTER TABLE spend ADD COLUMN kind TEXT NOT NULL DEFAULT 'llm';
    ALTER TABLE spend ADD COLUMN tenant TEXT;
    ALTER TABLE spend ADD COLUMN workflow TEXT;
    ALTER TABLE spend ADD COLUMN tool TEXT;
    UPDATE spend SET tenant = (SELECT tenant FROM runs WHERE runs.run_id = spend.run_id),
        workflow = (SELECT workflow FROM runs WHERE runs.run_id = spend.run_id);
    CREATE INDEX IF NOT EXISTS spend_created ON spend(created_at);
    CREATE INDEX IF NOT EXISTS spend_tenant ON spend(tenant, created_at);
    CREATE INDEX IF NOT EXISTS spend_workflow ON spend(workflow, created_at);
    CREATE TABLE IF NOT EXISTS budgets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        body TEXT NOT NULL,
        text TEXT NOT NULL,
        source TEXT NOT NULL,
        set_by TEXT,
        set_at REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS rate_hits (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL,
        at REAL NOT NULL,
        amount INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS rate_hits_key ON rate_hits(key, at);
    CREATE TABLE IF NOT EXISTS response_cache (
        key TEXT PRIMARY KEY,
        tenant TEXT,
        model TEXT NOT NULL,
        response TEXT NOT NULL,
        created_at REAL NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0,
        last_hit_at REAL
    );
    """,
}

# What a run's spend rows count (runner/engine/budget.py): every row but a released one; an
# open row (reserved, never settled: in flight, or cut off by a crash) at its reservation
_SPEND_COUNTED = "status != 'released' AND kind = 'llm'"
# a run's totals against its caps: its billed tool calls count in its dollars, not its tokens
_RUN_TOTALS = (
    "SELECT COALESCE(SUM(usd), 0), "
    "COALESCE(SUM(CASE WHEN kind = 'llm' THEN input_tokens + output_tokens ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN kind = 'llm' THEN 1 ELSE 0 END), 0) "
    "FROM spend WHERE run_id = ? AND status != 'released'"
)


_EVENT_SQL = "INSERT INTO events (run_id, ts, type, node_id, data) VALUES (?, ?, ?, ?, ?)"


def _done_seq(run_id: str) -> str:
    """A completed call's number among its run's completed calls (undo walks them newest
    first); perf (issue 11): the max within the run is read through the ledger_run index."""
    return f"(SELECT COALESCE(MAX(done_seq), 0) + 1 FROM ledger WHERE run_id = {run_id})"


_LEDGER_DONE = (
    "UPDATE ledger SET status = 'done', result = ?, error = NULL, done_seq = "
    + _done_seq("(SELECT run_id FROM ledger WHERE key = ?)")
    + ", updated_at = ? WHERE key = ?"
)


_OPEN: weakref.WeakSet[SqliteStore] = weakref.WeakSet()


@atexit.register
def _flush_open_stores() -> None:
    """Rows still queued when the process exits normally (a loop closed under them) commit."""
    for store in list(_OPEN):
        with suppress(Exception):
            store.flush()


class SqliteStore(Store):
    """One SQLite file shared by many processes; every write is a short IMMEDIATE transaction.

    Group commit (issue 11): the rows a running node writes as it goes (events, call records,
    its checkpoint, the ledger rows of calls without side effects, the run's outcome) are
    *deferred*: queued, then committed together with everything else queued, in one transaction
    and in the order they were made. The queue is committed by any other write transaction (a
    write's ledger intent, so everything a side effect builds on is durable before it happens;
    an approval request, so a parked run is complete), by `barrier` (after a node that called a
    model, at the end of a run), before a read of a table with queued rows, and at the latest
    GROUP_COMMIT_S after its first row. A crash can therefore lose only the last moments of
    effect-free work (tool reads, gates), which resume does again; never a side effect's record
    or a model's answer. Outside an event loop nothing is deferred: every write commits at once.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        self.target = str(self.path.resolve())
        self.location = str(self.path)
        if not self.path.exists():
            if not create:
                raise StoreError(
                    f"no run store at {str(self.path)!r}",
                    hint="run a workflow first, or point --store / FLOWRUN_STORE at the store",
                )
            private_dir(self.path.parent)
        elif self.path.is_dir():
            raise StoreError(f"store path {str(self.path)!r} is a directory")
        # the database (and the WAL and shared-memory files SQLite gives its mode) are 0600;
        # an existing one is chmod-ed by name, never opened (private_file): closing a
        # descriptor of a database drops every POSIX lock this process holds on it, those of
        # SQLite connections other threads have open included (a server's), and another
        # process could then reset the WAL under them, hiding their later commits from everyone
        private_file(self.path)
        use_key_beside(self.path.parent)
        self._lock = threading.RLock()
        self._pending: list[tuple[str, str, tuple[Any, ...]]] = []  # (table, sql, params)
        self._dirty: set[str] = set()  # tables with queued rows
        self._dirty_keys: set[str] = set()  # ledger keys with queued rows
        # a queued ledger intent's place in _pending, so that its `done` can replace it
        self._queued_intents: dict[str, tuple[int, dict[str, Any]]] = {}
        # runs created through this store and not yet finished or broken off, each with the
        # ledger keys made for it here: what `ledger_get(key, run_id=...)` may answer from
        self._new_runs: dict[str, set[str]] = {}
        # perf (issue 19): bundles this store has written; a bundle is content-addressed and
        # never changed or deleted, and sealing its files (a scan of every prompt and spec text)
        # was a tenth of starting a run
        self._bundles: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._barrier: asyncio.Future[None] | None = None
        self._kill_cache: dict[str, bool] = {}
        self._kill_version = -1
        _OPEN.add(self)
        try:
            self.conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._open()
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"{self.path}: not a usable flowrun store ({e})",
                hint="the file is corrupt or not SQLite; move it away to start a new store",
            ) from None

    def _open(self) -> None:
        c = self.conn
        # one read transaction: another process creating or migrating the store at this moment
        # is seen before or after its transaction, never half-way (tables without the app id)
        for attempt in range(50):
            c.execute("BEGIN")
            try:
                app = c.execute("PRAGMA application_id").fetchone()[0]
                version = c.execute("PRAGMA user_version").fetchone()[0]
                tables = [
                    r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
                c.execute("COMMIT")
                break
            except sqlite3.OperationalError as e:
                # many processes opening the store at once (a batch opens one per line): a
                # reader can find the WAL busy for a moment; try again, never mask the cause
                if c.in_transaction:
                    c.execute("ROLLBACK")
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                time.sleep(min(0.01 * (attempt + 1), 0.2))
        else:
            raise StoreError(f"{self.path}: the store stayed locked for too long")
        if app != APP_ID and (tables or version):
            raise StoreError(
                f"{self.path} is a SQLite database but not a flowrun store",
                hint="point --store at a flowrun store or at a new file",
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema version {version}; this flowrun reads up to "
                f"{SCHEMA_VERSION}",
                hint="upgrade flowrun to use this store",
            )
        if c.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        if version < SCHEMA_VERSION:
            with self.tx() as t:
                current = t.execute("PRAGMA user_version").fetchone()[0]
                for v in range(current + 1, SCHEMA_VERSION + 1):
                    for stmt in _statements(_MIGRATIONS[v]):
                        try:
                            t.execute(stmt)
                        except sqlite3.OperationalError as e:
                            # SQLite has no ADD COLUMN IF NOT EXISTS: a column already there
                            # (a store whose version was set back) is what the step wants
                            if "duplicate column name" not in str(e):
                                raise
                t.execute(f"PRAGMA application_id = {APP_ID}")
                t.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE): it never deadlocks on upgrade.

        Queued (deferred) rows are written first, in the same transaction."""
        with self._lock:
            for attempt in range(50):
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) and "busy" not in str(e):
                        raise
                    time.sleep(min(0.01 * (attempt + 1), 0.2))
            else:
                raise StoreError(f"{self.path}: the store stayed locked for too long")
            pending, self._pending = self._pending, []
            dirty, self._dirty = self._dirty, set()
            keys, self._dirty_keys = self._dirty_keys, set()
            self._queued_intents.clear()
            if pending and self._timer is not None:  # its rows are in this transaction
                self._timer.cancel()
                self._timer = None
            try:
                if pending:
                    _write_queued(self.conn, pending)
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                # the queued rows were fine: they wait for the next transaction
                self._pending[:0] = pending
                self._queued_intents.clear()
                self._dirty |= dirty
                self._dirty_keys |= keys
                raise
            else:
                self.conn.execute("COMMIT")

    def _defer(
        self, table: str, sql: str, params: tuple[Any, ...], *, key: str | None = None
    ) -> bool:
        """Queue a row for the next commit (True), or write it now when no event loop runs here.
        `key`: the ledger key the row is about (a read of that key commits the queue first)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            with self.tx() as c:
                c.execute(sql, params)
            return False
        with self._lock:
            self._pending.append((table, sql, params))
            self._dirty.add(table)
            if key is not None:
                self._dirty_keys.add(key)
            # a timer of a loop that has ended (asyncio.run returned) never fires: start anew
            if self._timer is None or self._timer_loop is not loop:
                self._timer = loop.call_later(GROUP_COMMIT_S, self._timed_flush)
                self._timer_loop = loop
        return True

    def _timed_flush(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Commit every queued row now (one transaction); nothing to do when none is queued."""
        if self._pending:
            with self.tx():
                pass

    async def barrier(self) -> None:
        """Wait until every row queued so far is committed. Callers that arrive while one
        commit is on its way share it: one transaction for all of them."""
        if not self._pending:
            return
        loop = asyncio.get_running_loop()
        fut = self._barrier
        if fut is None or fut.done() or fut.get_loop() is not loop:
            fut = self._barrier = loop.create_future()
            loop.call_soon(self._commit_barrier, fut)
        await asyncio.shield(fut)

    def _commit_barrier(self, fut: asyncio.Future[None]) -> None:
        if self._barrier is fut:
            self._barrier = None
        try:
            self.flush()
        except BaseException as e:
            if not fut.done():
                fut.set_exception(e)
            return
        if not fut.done():
            fut.set_result(None)

    def _fresh(self, table: str) -> None:
        """Before a read of `table`: commit its queued rows, so this connection reads them."""
        if table in self._dirty:
            self.flush()

    def close(self) -> None:
        self.flush()
        self.conn.close()
        _OPEN.discard(self)

    # -- runs ------------------------------------------------------------------------------
    def create_run(self, *, bundle: dict[str, Any] | None = None, **row: Any) -> None:
        """A new run row; `bundle` (Bundle.to_json()) is stored once per digest with it."""
        now = time.time()
        row = {**row, "created_at": now, "updated_at": now}
        row["inputs"] = dumps(row["inputs"])
        row["options"] = dumps(row.get("options") or {})
        if bundle is not None:
            row["bundle_digest"] = bundle["digest"]
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.tx() as c:
            if bundle is not None and bundle["digest"] not in self._bundles:
                c.execute(
                    "INSERT OR IGNORE INTO bundles (digest, entry, files, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (bundle["digest"], bundle["entry"], dumps(bundle["files"]), now),
                )
            try:
                c.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(row.values()))
            except sqlite3.IntegrityError as e:
                if "UNIQUE" not in str(e):
                    raise
                raise DuplicateRun(f"a run with id {row['run_id']!r} already exists") from None
            c.execute(
                "INSERT INTO events (run_id, ts, type, data) VALUES (?, ?, 'run_created', ?)",
                (row["run_id"], now, dumps({"workflow": row["workflow"]})),
            )
        self._new_runs[row["run_id"]] = set()
        if bundle is not None:
            self._bundles.add(bundle["digest"])

    def update_run(self, run_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        if "outputs" in fields:
            fields["outputs"] = dumps(fields["outputs"])
        if isinstance(fields.get("reason"), str):
            fields["reason"] = seal(fields["reason"])
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.tx() as c:
            c.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", (*fields.values(), run_id))

    def finish_run(self, run_id: str, *, add_duration_s: float, **fields: Any) -> None:
        """A run's outcome and totals at the end of an execution (deferred, see the class):
        `add_duration_s` adds this execution's time to the time of earlier ones."""
        fields["updated_at"] = time.time()
        if "outputs" in fields:
            fields["outputs"] = dumps(fields["outputs"])
        if isinstance(fields.get("reason"), str):
            fields["reason"] = seal(fields["reason"])
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.run_ended(run_id)
        self._defer(
            "runs",
            f"UPDATE runs SET {sets}, duration_s = duration_s + ? WHERE run_id = ?",
            (*fields.values(), add_duration_s, run_id),
        )

    def run_ended(self, run_id: str) -> None:
        """This process's execution of a run has ended (finished, parked or broken off): from
        now on its ledger is read from the file, whoever wrote it."""
        self._new_runs.pop(run_id, None)

    def get_run(self, run_id: str) -> RunRow:
        self._fresh("runs")
        row = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            near = self.conn.execute(
                "SELECT run_id FROM runs WHERE run_id LIKE ? ORDER BY created_at DESC LIMIT 1",
                (run_id[:10] + "%",),
            ).fetchone()
            raise NotFound(
                f"no run {run_id!r} in {self.path}",
                hint=f"did you mean {near[0]!r}?" if near else "list runs with `flowrun runs`",
            )
        return _run_row(self.conn, row)

    def get_bundle(self, digest: str) -> dict[str, Any]:
        """A stored plan bundle (Bundle.to_json() shape; the caller checks its digest)."""
        row = self.conn.execute(
            "SELECT entry, files FROM bundles WHERE digest = ?", (digest,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no plan bundle {digest[:12]} in {self.path}")
        return {"entry": row[0], "files": loads(row[1]), "digest": digest}

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        tenant: str | None = None,
        limit: int = 50,
    ) -> list[RunRow]:
        where, args = [], []
        for col, val in (("status", status), ("workflow", workflow), ("tenant", tenant)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        self._fresh("runs")
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC LIMIT ?"
        return [_run_row(self.conn, r) for r in self.conn.execute(sql, (*args, limit))]

    def claim_run(self, run_id: str, *, was_status: str, was_pid: int | None, host: str) -> bool:
        with self.tx() as c:
            cur = c.execute(
                "UPDATE runs SET status = 'running', pid = ?, host = ?, updated_at = ? "
                "WHERE run_id = ? AND status = ? AND COALESCE(pid, -1) = COALESCE(?, -1)",
                (os.getpid(), host, time.time(), run_id, was_status, was_pid),
            )
            return cur.rowcount == 1

    def workflows(self) -> list[str]:
        self._fresh("runs")
        return sorted(r[0] for r in self.conn.execute("SELECT DISTINCT workflow FROM runs"))

    def status_counts(self) -> dict[str, int]:
        self._fresh("runs")
        return dict(self.conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))

    def finished_runs(
        self,
        statuses: Sequence[str],
        *,
        workflow: str | None = None,
        tenant: str | None = None,
        since: float | None = None,
    ) -> list[FinishedRun]:
        where = ["status IN (" + ",".join("?" for _ in statuses) + ")"]
        args: list[Any] = list(statuses)
        for col, val in (("workflow", workflow), ("tenant", tenant)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        self._fresh("runs")
        rows = self.conn.execute(
            "SELECT run_id, status, duration_s, cost_usd FROM runs WHERE " + " AND ".join(where),
            args,
        )
        return [FinishedRun(*r) for r in rows]

    def tool_call_counts(self, run_ids: Sequence[str]) -> tuple[int, int]:
        if not run_ids:
            return 0, 0
        self._fresh("calls")
        marks = ",".join("?" for _ in run_ids)
        n, failed = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(error IS NOT NULL), 0) FROM calls "
            f"WHERE kind = 'tool' AND run_id IN ({marks})",
            list(run_ids),
        ).fetchone()
        return int(n), int(failed)

    def runs_with_event(self, type_: str, run_ids: Sequence[str]) -> int:
        if not run_ids:
            return 0
        self._fresh("events")
        marks = ",".join("?" for _ in run_ids)
        return int(
            self.conn.execute(
                f"SELECT COUNT(DISTINCT run_id) FROM events WHERE type = ? AND run_id IN ({marks})",
                [type_, *run_ids],
            ).fetchone()[0]
        )

    def request_kill(self, run_id: str, by: str | None) -> None:
        self._kill_cache.clear()
        with self.tx() as c:
            c.execute(
                "UPDATE runs SET kill_requested = 1, updated_at = ? WHERE run_id = ?",
                (time.time(), run_id),
            )
            c.execute(
                "INSERT INTO events (run_id, ts, type, data) VALUES (?, ?, 'kill_requested', ?)",
                (run_id, time.time(), dumps({"by": by})),
            )

    def kill_requested(self, run_id: str) -> bool:
        # perf (issue 11): asked before every node starts. A kill arrives as a commit, by another
        # process (data_version changes) or through this connection (request_kill forgets the
        # cache), so an answer stands while neither happened
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._kill_version:
            self._kill_cache.clear()
            self._kill_version = version
        known = self._kill_cache.get(run_id)
        if known is not None:
            return known
        row = self.conn.execute(
            "SELECT kill_requested FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        killed = self._kill_cache[run_id] = bool(row and row[0])
        return killed

    # -- node results (append-only) ----------------------------------------------------------
    def save_node(self, run_id: str, node_id: str, status: str, result: dict[str, Any]) -> None:
        """A node's checkpoint (deferred: durable before any node starts, see `barrier`)."""
        now = time.time()
        self._defer(
            "node_results",
            "INSERT INTO node_results (run_id, node_id, seq, status, result, created_at) "
            "SELECT ?, ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM node_results "
            "WHERE run_id = ? AND node_id = ?",
            (run_id, node_id, status, dumps(result), now, run_id, node_id),
        )
        self._defer(
            "events", _EVENT_SQL, (run_id, now, "node_finished", node_id, dumps({"status": status}))
        )

    def node_results(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The latest result of every node of a run."""
        self._fresh("node_results")
        rows = self.conn.execute(
            "SELECT node_id, result FROM node_results WHERE run_id = ? ORDER BY node_id, seq",
            (run_id,),
        )
        return {node_id: loads(result) for node_id, result in rows}

    # -- events ------------------------------------------------------------------------------
    def event(self, run_id: str, type_: str, node_id: str | None = None, **data: Any) -> None:
        """An audit event (deferred: committed with the next transaction, see the class)."""
        self._defer("events", _EVENT_SQL, (run_id, time.time(), type_, node_id, dumps(data)))

    def events(self, run_id: str | None = None, type_: str | None = None) -> list[dict[str, Any]]:
        self._fresh("events")
        where, args = [], []
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        if type_ is not None:
            where.append("type = ?")
            args.append(type_)
        sql = "SELECT id, run_id, ts, type, node_id, data FROM events"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return [
            {"id": i, "run_id": r, "ts": ts, "type": t, "node_id": n, "data": loads(d)}
            for i, r, ts, t, n, d in self.conn.execute(sql, args)
        ]

    # -- calls (model and tool calls, for trace, stats and replay) ----------------------------
    def record_call(self, **row: Any) -> None:
        """A model or tool call as made (deferred, see the class)."""
        row = {**row, "data": dumps(row["data"])}
        if isinstance(row.get("error"), str):
            row["error"] = seal(row["error"])
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._defer("calls", f"INSERT INTO calls ({cols}) VALUES ({marks})", tuple(row.values()))

    def calls(self, run_id: str) -> list[dict[str, Any]]:
        self._fresh("calls")
        rows = self.conn.execute("SELECT * FROM calls WHERE run_id = ? ORDER BY id", (run_id,))
        out = []
        for r in rows:
            d = dict(zip(_cols(self.conn, "calls"), r, strict=True))
            d["data"] = loads(d["data"])
            d["error"] = unseal_text(d.get("error"))
            out.append(d)
        return out

    # -- model-call spend (runner/engine/budget.py) ------------------------------------------
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
        """Reserve one call for a run, atomically against its caps and every ceiling.

        In one write transaction (so processes running nodes of one run, Temporal workers, or
        runs of one tenant cannot together pass a cap or a ceiling): what the run's rows count
        now, and, when the call fits under every cap in `caps` (`usd`, `tokens`, `llm_calls`)
        and every ceiling that selects `call` (runner/store/limits.py), a new open row.
        Committed before the call is made, so a crash after this counts the call. Returns the
        row id (None: refused by a cap, no row) and the run's counted totals before this call;
        a ceiling's refusal raises CeilingReached.
        """
        now = time.time()
        kind = call.kind if call is not None else "llm"
        tokens = input_tokens + output_tokens if kind == "llm" else 0
        with self.tx() as c:
            used_usd, used_tokens, used_calls = c.execute(_RUN_TOTALS, (run_id,)).fetchone()
            totals = {"usd": float(used_usd), "tokens": float(used_tokens), "llm_calls": used_calls}
            want = {"usd": usd, "tokens": tokens, "llm_calls": 1 if kind == "llm" else 0}
            for dim, cap in caps.items():
                if want[dim] and totals[dim] + want[dim] > cap + (1e-12 if dim == "usd" else 0):
                    return None, totals
            if call is not None:
                budgets = limits.current_budgets(_q(c), self.target)
                ceilings = budgets.applicable(call)
                if ceilings:
                    wanted = {**want, "tool_calls": 1 if kind == "tool" else 0}
                    limits.check_ceilings(_q(c), _no_lock, ceilings, call, wanted, now)
            cur = c.execute(
                "INSERT INTO spend (run_id, node_id, at, model, status, usd, input_tokens, "
                "output_tokens, reserved_usd, reserved_tokens, created_at, updated_at, kind, "
                "tenant, workflow, tool) "
                "VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    node_id,
                    at,
                    model,
                    usd,
                    input_tokens if kind == "llm" else 0,
                    output_tokens if kind == "llm" else 0,
                    usd,
                    tokens,
                    now,
                    now,
                    kind,
                    call.tenant if call else None,
                    call.workflow if call else None,
                    call.tool if call else None,
                ),
            )
            return cur.lastrowid, totals

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
        """A reserved call's end (deferred: until it commits, the open row counts its whole
        reservation, never less than was billed): `billed` with what the provider billed,
        `cancelled` (cut off in flight; it keeps its reservation), or `released`."""
        self._defer(
            "spend",
            "UPDATE spend SET status = ?, usd = COALESCE(?, usd), "
            "input_tokens = COALESCE(?, input_tokens), output_tokens = COALESCE(?, output_tokens), "
            "model = COALESCE(?, model), updated_at = ? WHERE id = ?",
            (status, usd, input_tokens, output_tokens, model, time.time(), row_id),
        )

    def spend_by_node(self, run_id: str, node_id: str | None = None) -> dict[str, dict[str, Any]]:
        """What a run's rows count, per top-level node (one node's only, with `node_id`)."""
        self._fresh("spend")
        sql = (
            "SELECT node_id, COUNT(*), COALESCE(SUM(usd), 0), COALESCE(SUM(input_tokens), 0), "
            f"COALESCE(SUM(output_tokens), 0) FROM spend WHERE run_id = ? AND {_SPEND_COUNTED}"
        )
        args: tuple[Any, ...] = (run_id,)
        if node_id is not None:
            sql += " AND node_id = ?"
            args = (run_id, node_id)
        return {
            n: {"llm_calls": k, "cost_usd": u, "input_tokens": i, "output_tokens": o}
            for n, k, u, i, o in self.conn.execute(sql + " GROUP BY node_id", args)
        }

    def spend_rows(self, run_id: str) -> list[dict[str, Any]]:
        """Every call reserved for a run (model calls, and billed tool calls: `kind`), in the
        order reserved."""
        self._fresh("spend")
        rows = self.conn.execute(
            "SELECT node_id, at, model, status, usd, input_tokens, output_tokens, reserved_usd, "
            "reserved_tokens, kind FROM spend WHERE run_id = ? ORDER BY id",
            (run_id,),
        )
        keys = (
            "node_id",
            "at",
            "model",
            "status",
            "usd",
            "input_tokens",
            "output_tokens",
            "reserved_usd",
            "reserved_tokens",
            "kind",
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- the idempotency ledger --------------------------------------------------------------
    def ledger_get(self, key: str, *, run_id: str | None = None) -> dict[str, Any] | None:
        """The ledger row of `key`, if any. `run_id`: the key is one only that run makes (a
        default key, "<run id>:<node>"), so for a run created through this store and running
        here no row exists that was not made here, and those are the only ones worth a read."""
        made = self._new_runs.get(run_id) if run_id is not None else None
        if made is not None and key not in made:
            return None
        if key in self._dirty_keys:  # only this key's queued rows matter to this read
            self.flush()
        row = self.conn.execute("SELECT * FROM ledger WHERE key = ?", (key,)).fetchone()
        return _ledger_row(self.conn, row) if row else None

    def ledger_intent(self, key: str, *, defer: bool = False, **row: Any) -> None:
        """Record that a call is about to happen. A write's intent commits before its side
        effect; `defer` (calls without side effects) lets it ride with the next commit."""
        now = time.time()
        row = {"key": key, **row, "status": "intent", "created_at": now, "updated_at": now}
        row["args"] = dumps(row["args"])
        made = self._new_runs.get(str(row.get("run_id")))
        if made is not None:
            made.add(key)
        sql = _ledger_insert(tuple(row))
        if defer:
            with self._lock:
                if self._defer("ledger", sql, tuple(row.values()), key=key):
                    self._queued_intents[key] = (len(self._pending) - 1, row)
            return
        with self.tx() as c:
            c.execute(sql, tuple(row.values()))

    def ledger_claim(self, key: str, **row: Any) -> bool:
        now = time.time()
        row = {"key": key, **row, "status": "intent", "created_at": now, "updated_at": now}
        row["args"] = dumps(row["args"])
        made = self._new_runs.get(str(row.get("run_id")))
        if made is not None:
            made.add(key)
        with self.tx() as c:
            cur = c.execute(_ledger_claim(tuple(row)), tuple(row.values()))
            return cur.rowcount == 1

    def ledger_done(self, key: str, result: Any, *, defer: bool = False) -> None:
        # done_seq orders the completed effects of one run (undo walks them newest first)
        now = time.time()
        if defer:
            with self._lock:
                queued = self._queued_intents.pop(key, None)
                if queued is not None:
                    # perf (issue 11): its intent has not been written yet: one row says both
                    i, row = queued
                    row = {**row, "status": "done", "result": dumps(result), "updated_at": now}
                    cols = tuple(row)
                    self._pending[i] = (
                        "ledger",
                        _ledger_insert(cols, done_seq=True),
                        (*row.values(), row["run_id"]),
                    )
                    return
        params = (dumps(result), key, now, key)
        if defer:
            self._defer("ledger", _LEDGER_DONE, params, key=key)
            return
        with self.tx() as c:
            c.execute(_LEDGER_DONE, params)

    def ledger_failed(self, key: str, error: str) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE ledger SET status = 'failed', error = ?, updated_at = ? WHERE key = ?",
                (seal(error), time.time(), key),
            )

    def ledger_for_run(self, run_id: str) -> list[dict[str, Any]]:
        self._fresh("ledger")
        rows = self.conn.execute(
            "SELECT * FROM ledger WHERE run_id = ? ORDER BY COALESCE(done_seq, 0), created_at",
            (run_id,),
        )
        return [_ledger_row(self.conn, r) for r in rows]

    def ledger_mark_undone(self, key: str) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE ledger SET undone = 1, updated_at = ? WHERE key = ?", (time.time(), key)
            )

    # -- approvals ---------------------------------------------------------------------------
    def approval_get(self, run_id: str, node_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT * FROM approvals WHERE run_id = ? AND node_id = ?", (run_id, node_id)
        ).fetchone()
        return _approval_row(self.conn, row) if row else None

    def approval_request(self, run_id: str, node_id: str, **row: Any) -> None:
        row = {
            "run_id": run_id,
            "node_id": node_id,
            "status": "waiting",
            "requested_at": time.time(),
            **row,
        }
        for k in ("assignees", "decision_schema"):
            row[k] = dumps(row.get(k))
        if isinstance(row.get("summary"), str):
            row["summary"] = seal(row["summary"])
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.tx() as c:
            c.execute(
                f"INSERT OR IGNORE INTO approvals ({cols}) VALUES ({marks})", tuple(row.values())
            )
            c.execute(
                "INSERT INTO events (run_id, ts, type, node_id, data) "
                "VALUES (?, ?, 'approval_requested', ?, ?)",
                (run_id, time.time(), node_id, dumps({"summary": row.get("summary")})),
            )

    def approval_decide(
        self,
        run_id: str,
        node_id: str,
        *,
        status: str,
        by: str,
        decision: Any = None,
        reason: str | None = None,
    ) -> None:
        """Decide a waiting approval exactly once; a second decision is refused, not applied."""
        with self.tx() as c:
            cur = c.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, decision = ?, "
                "reason = ? "
                "WHERE run_id = ? AND node_id = ? AND status = 'waiting'",
                (status, by, time.time(), dumps(decision), seal(reason), run_id, node_id),
            )
            if cur.rowcount == 0:
                row = c.execute(
                    "SELECT status, decided_by FROM approvals WHERE run_id = ? AND node_id = ?",
                    (run_id, node_id),
                ).fetchone()
                if row is None:
                    raise NotFound(f"run {run_id!r} has no approval waiting at node {node_id!r}")
                by_text = f" by {row[1]}" if row[1] else ""
                raise NotFound(
                    f"the approval of {run_id!r} at {node_id!r} is already {row[0]}{by_text}",
                    identities=(row[1],),  # who decided it, shown as is
                )
            c.execute(
                "INSERT INTO events (run_id, ts, type, node_id, data) VALUES (?, ?, ?, ?, ?)",
                (
                    run_id,
                    time.time(),
                    f"approval_{status}",
                    node_id,
                    dumps({"by": by, "reason": reason}),
                ),
            )

    def inbox(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT * FROM approvals WHERE status = 'waiting' "
            "ORDER BY requested_at, run_id, node_id"
        )
        return [_approval_row(self.conn, r) for r in rows]

    # -- batches (runner/runs/batch.py) -----------------------------------------------------
    def batch_create(self, batch_id: str, *, lines: Sequence[dict[str, Any]], **row: Any) -> None:
        now = time.time()
        batch = {**row, "batch_id": batch_id, "total": len(lines), "created_at": now}
        batch["options"] = dumps(batch.get("options") or {})
        batch["updated_at"] = now
        cols = ", ".join(batch)
        try:
            with self.tx() as c:
                c.execute(
                    f"INSERT INTO batches ({cols}) VALUES ({', '.join('?' for _ in batch)})",
                    tuple(batch.values()),
                )
                c.executemany(
                    "INSERT INTO batch_lines (batch_id, line, inputs, status, reason, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (
                            batch_id,
                            x["line"],
                            dumps(x.get("inputs")),
                            x["status"],
                            seal(x.get("reason")),
                            now,
                        )
                        for x in lines
                    ],
                )
        except sqlite3.IntegrityError:
            raise DuplicateRun(f"a batch with id {batch_id!r} already exists") from None

    def batch_get(self, batch_id: str) -> dict[str, Any]:
        cur = self.conn.execute("SELECT * FROM batches WHERE batch_id = ?", (batch_id,))
        row = cur.fetchone()
        if row is None:
            raise NotFound(f"no batch {batch_id!r} in {self.location}")
        return _batch_row(dict(zip([d[0] for d in cur.description], row, strict=True)))

    def batch_update(self, batch_id: str, **fields: Any) -> None:
        if "options" in fields:
            fields["options"] = dumps(fields["options"])
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.tx() as c:
            c.execute(f"UPDATE batches SET {sets} WHERE batch_id = ?", (*fields.values(), batch_id))

    def list_batches(self, *, limit: int = 50) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT * FROM batches ORDER BY created_at DESC, batch_id LIMIT ?", (limit,)
        )
        names = [d[0] for d in cur.description]
        return [_batch_row(dict(zip(names, r, strict=True))) for r in cur.fetchall()]

    def batch_line_set(self, batch_id: str, line: int, **fields: Any) -> None:
        if isinstance(fields.get("reason"), str):
            fields["reason"] = seal(fields["reason"])  # a run's reason may quote a value
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.tx() as c:
            c.execute(
                f"UPDATE batch_lines SET {sets} WHERE batch_id = ? AND line = ?",
                (*fields.values(), batch_id, line),
            )

    def batch_lines(self, batch_id: str) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT line, inputs, run_id, status, reason FROM batch_lines WHERE batch_id = ? "
            "ORDER BY line",
            (batch_id,),
        )
        return [
            {"line": n, "inputs": loads(i), "run_id": r, "status": s, "reason": unseal_text(why)}
            for n, i, r, s, why in cur.fetchall()
        ]

    # -- copies ----------------------------------------------------------------------------
    def row_counts(self) -> dict[str, int]:
        self.flush()
        return {t: self.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}

    def export_rows(self, table: str) -> list[dict[str, Any]]:
        if table not in TABLES:
            raise ValueError(f"no table {table!r}")
        self.flush()
        cols = _cols(self.conn, table)
        return [
            dict(zip(cols, r, strict=True))
            for r in self.conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
        ]

    def import_rows(self, tables: dict[str, list[dict[str, Any]]]) -> None:
        with self.tx() as c:
            for table, rows in tables.items():
                if table not in TABLES:
                    raise ValueError(f"no table {table!r}")
                for row in rows:
                    cols = ", ".join(row)
                    marks = ", ".join("?" for _ in row)
                    c.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(row.values()))

    # -- switches ----------------------------------------------------------------------------
    def writes_enabled(self) -> bool:
        row = self.conn.execute("SELECT value FROM switches WHERE name = 'writes'").fetchone()
        return row is None or row[0] == "on"

    def set_writes(self, on: bool, by: str | None) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO switches (name, value, changed_by, changed_at) "
                "VALUES ('writes', ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "value = excluded.value, changed_by = excluded.changed_by, "
                "changed_at = excluded.changed_at",
                ("on" if on else "off", by, time.time()),
            )
            c.execute(
                "INSERT INTO events (run_id, ts, type, data) VALUES ('*', ?, 'writes_switch', ?)",
                (time.time(), dumps({"on": on, "by": by})),
            )

    # -- identities (runner/runs/identity.py: who may act) -----------------------------------
    def identity_add(self, name: str, *, token_sha256: str, by: str | None, **row: Any) -> None:
        now = time.time()
        try:
            with self.tx() as c:
                c.execute(
                    "INSERT INTO identities (name, kind, roles, tenants, scopes, live, "
                    "token_sha256, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        row["kind"],
                        dumps(list(row.get("roles") or [])),
                        dumps(list(row.get("tenants") or [])),
                        dumps(list(row.get("scopes") or [])),
                        int(bool(row.get("live"))),
                        token_sha256,
                        now,
                        by,
                    ),
                )
                c.execute(
                    "INSERT INTO events (run_id, ts, type, data) "
                    "VALUES ('*', ?, 'identity_added', ?)",
                    (now, dumps({"identity": name, "kind": row["kind"], "by": by})),
                )
        except sqlite3.IntegrityError:
            raise DuplicateRun(f"an identity named {name!r} already exists") from None

    def identity_get(self, name: str) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM identities WHERE name = ?", (name,))
        row = cur.fetchone()
        return _identity_row([d[0] for d in cur.description], row) if row else None

    def identity_by_token(self, token_sha256: str) -> dict[str, Any] | None:
        cur = self.conn.execute(
            "SELECT * FROM identities WHERE token_sha256 = ? AND revoked_at IS NULL",
            (token_sha256,),
        )
        row = cur.fetchone()
        return _identity_row([d[0] for d in cur.description], row) if row else None

    def identities(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM identities ORDER BY name")
        names = [d[0] for d in cur.description]
        return [_identity_row(names, r) for r in cur.fetchall()]

    def identity_revoke(self, name: str, by: str | None) -> bool:
        now = time.time()
        with self.tx() as c:
            cur = c.execute(
                "UPDATE identities SET revoked_at = ?, revoked_by = ? "
                "WHERE name = ? AND revoked_at IS NULL",
                (now, by, name),
            )
            if cur.rowcount == 0:
                return False
            c.execute(
                "INSERT INTO events (run_id, ts, type, data) "
                "VALUES ('*', ?, 'identity_revoked', ?)",
                (now, dumps({"identity": name, "by": by})),
            )
        return True

    # -- intake and notifications (runner/runs/intake.py, runner/runs/notify.py) -------------
    def delivery_claim(self, hook: str, delivery_id: str, run_id: str) -> tuple[str, bool]:
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO deliveries (hook, delivery_id, run_id, received_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(hook, delivery_id) DO NOTHING",
                (hook, delivery_id, run_id, time.time()),
            )
            if cur.rowcount == 1:
                return run_id, True
            row = c.execute(
                "SELECT run_id FROM deliveries WHERE hook = ? AND delivery_id = ?",
                (hook, delivery_id),
            ).fetchone()
        return str(row[0]), False

    def delivery_release(self, hook: str, delivery_id: str, run_id: str) -> None:
        with self.tx() as c:
            c.execute(
                "DELETE FROM deliveries WHERE hook = ? AND delivery_id = ? AND run_id = ?",
                (hook, delivery_id, run_id),
            )

    def rate_take(self, key: str, *, limit: int, window_s: float, now: float) -> float:
        start = (now // window_s) * window_s
        with self.tx() as c:
            row = c.execute(
                "INSERT INTO rate_windows (key, window_start, count) VALUES (?, ?, 1) "
                "ON CONFLICT(key) DO UPDATE SET count = CASE WHEN "
                "rate_windows.window_start = excluded.window_start THEN rate_windows.count + 1 "
                "ELSE 1 END, window_start = excluded.window_start RETURNING count",
                (key, start),
            ).fetchone()
        return 0.0 if int(row[0]) <= limit else max(start + window_s - now, 0.001)

    def notice_claim(self, run_id: str, node_id: str, kind: str, target: str) -> bool:
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO notices (run_id, node_id, kind, target, status, attempts, "
                "updated_at) VALUES (?, ?, ?, ?, 'sending', 0, ?) ON CONFLICT DO NOTHING",
                (run_id, node_id, kind, target, time.time()),
            )
            return cur.rowcount == 1

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
        with self.tx() as c:
            c.execute(
                "UPDATE notices SET status = ?, attempts = ?, error = ?, updated_at = ? "
                "WHERE run_id = ? AND node_id = ? AND kind = ? AND target = ?",
                (status, attempts, error, time.time(), run_id, node_id, kind, target),
            )

    def notices(self, run_id: str) -> list[dict[str, Any]]:
        self.flush()
        cur = self.conn.execute(
            "SELECT run_id, node_id, kind, target, status, attempts, error, updated_at "
            "FROM notices WHERE run_id = ? ORDER BY updated_at, node_id, kind, target",
            (run_id,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    # -- readiness and autonomy (runner/runs/readiness.py, runner/engine/autonomy.py) -------
    def eval_record(
        self, workflow: str, *, spec_digest: str | None, passed: bool, summary: dict[str, Any]
    ) -> int:
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO eval_results (workflow, spec_digest, created_at, passed, summary) "
                "VALUES (?, ?, ?, ?, ?)",
                (workflow, spec_digest, time.time(), int(passed), dumps(summary)),
            )
            return int(cur.lastrowid or 0)

    def eval_results(self, workflow: str, *, limit: int = 10) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT id, workflow, spec_digest, created_at, passed, summary FROM eval_results "
            "WHERE workflow = ? ORDER BY id DESC LIMIT ?",
            (workflow, limit),
        ).fetchall()
        return [
            {
                "id": i,
                "workflow": w,
                "spec_digest": d,
                "created_at": at,
                "passed": bool(p),
                "summary": loads(s),
            }
            for i, w, d, at, p, s in rows
        ]

    @staticmethod
    def _window(workflow: str, tenant: str | None, since: float | None) -> tuple[str, list[Any]]:
        sql = "SELECT run_id FROM runs WHERE workflow = ?"
        args: list[Any] = [workflow]
        if tenant is not None:
            sql += " AND tenant = ?"
            args.append(tenant)
        if since is not None:
            sql += " AND created_at >= ?"
            args.append(since)
        return sql, args

    def window_runs(
        self, workflow: str, *, tenant: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        sub, args = self._window(workflow, tenant, since)
        self._fresh("runs")
        rows = self.conn.execute(
            "SELECT run_id, status, cost_usd, duration_s, created_at, tenant FROM runs "
            f"WHERE run_id IN ({sub}) ORDER BY created_at",
            args,
        ).fetchall()
        names = ("run_id", "status", "cost_usd", "duration_s", "created_at", "tenant")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def window_approvals(
        self, workflow: str, *, tenant: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        sub, args = self._window(workflow, tenant, since)
        rows = self.conn.execute(
            "SELECT run_id, node_id, status, requested_at, decided_at, timeout_at FROM approvals "
            f"WHERE run_id IN ({sub}) ORDER BY requested_at",
            args,
        ).fetchall()
        names = ("run_id", "node_id", "status", "requested_at", "decided_at", "timeout_at")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def window_writes(
        self, workflow: str, *, tenant: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        sub, args = self._window(workflow, tenant, since)
        self._fresh("ledger")
        rows = self.conn.execute(
            "SELECT key, run_id, node_id, tool, status, undone, created_at FROM ledger "
            f"WHERE effect = 'write' AND run_id IN ({sub}) ORDER BY created_at",
            args,
        ).fetchall()
        names = ("key", "run_id", "node_id", "tool", "status", "undone", "created_at")
        return [{**dict(zip(names, r, strict=True)), "undone": bool(r[5])} for r in rows]

    def window_events(
        self,
        workflow: str,
        types: Sequence[str],
        *,
        tenant: str | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        if not types:
            return []
        sub, args = self._window(workflow, tenant, since)
        self._fresh("events")
        marks = ",".join("?" for _ in types)
        rows = self.conn.execute(
            "SELECT id, run_id, ts, type, node_id, data FROM events "
            f"WHERE type IN ({marks}) AND run_id IN ({sub}) ORDER BY id",
            [*types, *args],
        ).fetchall()
        return [
            {"id": i, "run_id": r, "ts": ts, "type": t, "node_id": n, "data": loads(d)}
            for i, r, ts, t, n, d in rows
        ]

    def window_calls(
        self,
        workflow: str,
        *,
        kind: str,
        tenant: str | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        sub, args = self._window(workflow, tenant, since)
        self._fresh("calls")
        rows = self.conn.execute(
            "SELECT run_id, node_id, name, data, error, trace_id FROM calls "
            f"WHERE kind = ? AND run_id IN ({sub}) ORDER BY id",
            [kind, *args],
        ).fetchall()
        return [
            {
                "run_id": r,
                "node_id": n,
                "name": name,
                "data": loads(d),
                "error": unseal_text(e),
                "trace_id": t,
            }
            for r, n, name, d, e, t in rows
        ]

    def tool_rates(
        self, workflow: str, tool: str, *, tenant: str | None = None, since: float | None = None
    ) -> tuple[int, int, int, int]:
        sub, args = self._window(workflow, tenant, since)
        self._fresh("ledger")
        self._fresh("events")
        writes, undone = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(undone), 0) FROM ledger WHERE effect = 'write' "
            f"AND status = 'done' AND tool = ? AND run_id IN ({sub})",
            [tool, *args],
        ).fetchone()
        decisions, denied = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(json_extract(data, '$.effect') = 'deny'), 0) "
            "FROM events WHERE type = 'policy_decision' AND json_extract(data, '$.tool') = ? "
            f"AND json_extract(data, '$.workflow') IS NULL AND run_id IN ({sub})",
            [tool, *args],
        ).fetchone()
        return int(writes), int(undone), int(decisions), int(denied)

    _AUTONOMY_COLS = ("workflow", "tool", "tenant", "level", "changed_by", "changed_at", "reason")

    def autonomy_rows(self, workflow: str | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(self._AUTONOMY_COLS)} FROM autonomy"
        args: list[Any] = []
        if workflow is not None:
            sql += " WHERE workflow = ?"
            args.append(workflow)
        rows = self.conn.execute(sql + " ORDER BY workflow, tool, tenant", args).fetchall()
        return [_unseal_reason(dict(zip(self._AUTONOMY_COLS, r, strict=True))) for r in rows]

    def autonomy_level(self, workflow: str, tool: str, tenant: str | None) -> dict[str, Any] | None:
        rows = self.conn.execute(
            f"SELECT {', '.join(self._AUTONOMY_COLS)} FROM autonomy "
            "WHERE workflow = ? AND tool = ? AND tenant IN (?, '') "
            "ORDER BY tenant = '' LIMIT 1",
            (workflow, tool, tenant or ""),
        ).fetchall()
        return (
            _unseal_reason(dict(zip(self._AUTONOMY_COLS, rows[0], strict=True))) if rows else None
        )

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
        now = time.time()
        with self.tx() as c:
            row = c.execute(
                "SELECT level FROM autonomy WHERE workflow = ? AND tool = ? AND tenant = ?",
                (workflow, tool, tenant or ""),
            ).fetchone()
            was = row[0] if row else ""
            if only_if is not None and was != only_if:
                return False
            c.execute(
                "INSERT INTO autonomy (workflow, tool, tenant, level, changed_by, changed_at, "
                "reason) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workflow, tool, tenant) DO "
                "UPDATE SET level = excluded.level, changed_by = excluded.changed_by, "
                "changed_at = excluded.changed_at, reason = excluded.reason",
                (workflow, tool, tenant or "", level, by, now, seal(reason)),
            )
            data = {
                "workflow": workflow,
                "tool": tool,
                "tenant": tenant,
                "from": was or None,
                "to": level,
                "by": by,
                "reason": reason,
                **audit,
            }
            c.execute(_EVENT_SQL, ("*", now, "autonomy_changed", None, dumps(data)))
        return True

    # -- spend and rate control across runs (issue 23; runner/store/limits.py) ----------------
    def budgets_set(self, body: dict[str, Any], *, text: str, source: str, by: str | None) -> int:
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO budgets (body, text, source, set_by, set_at) VALUES (?, ?, ?, ?, ?)",
                (json.dumps(body, sort_keys=True), text, source, by, time.time()),
            )
            return int(cur.lastrowid or 0)

    def budgets_get(self) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT id, body, text, source, set_by, set_at FROM budgets ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        keys = ("version", "body", "text", "source", "set_by", "set_at")
        out = dict(zip(keys, row, strict=True))
        out["body"] = json.loads(out["body"])
        return out

    def spend_totals(self, bound: dict[str, str], since: float) -> dict[str, float]:
        self._fresh("spend")
        return limits.totals(_q(self.conn), bound, since)

    def spend_values(self, key: str, since: float) -> list[str]:
        self._fresh("spend")
        return limits.values(_q(self.conn), key, since, tools=key == "tool")

    def rate_acquire(self, key: str, *, amount: int, limit: int, per: float) -> float:
        with self.tx() as c:
            return limits.rate_acquire(_q(c), _no_lock, key, amount=amount, limit=limit, per=per)

    def cache_get(self, key: str) -> dict[str, Any] | None:
        with self.tx() as c:
            row = c.execute(
                "SELECT tenant, model, response, created_at, hits FROM response_cache "
                "WHERE key = ?",
                (key,),
            ).fetchone()
            if row is None:
                return None
            c.execute(
                "UPDATE response_cache SET hits = hits + 1, last_hit_at = ? WHERE key = ?",
                (time.time(), key),
            )
        tenant, model, response, created_at, hits = row
        return {
            "tenant": tenant,
            "model": model,
            "response": loads(response),
            "created_at": created_at,
            "hits": hits + 1,
        }

    def cache_put(self, key: str, *, tenant: str | None, model: str, response: Any) -> None:
        self._defer(
            "response_cache",
            "INSERT INTO response_cache (key, tenant, model, response, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "response = excluded.response, model = excluded.model, "
            "created_at = excluded.created_at, hits = 0",
            (key, tenant, model, dumps(response), time.time()),
        )

    def cache_stats(self, tenant: str | None = None) -> dict[str, int]:
        self._fresh("response_cache")
        sql = "SELECT COUNT(*), COALESCE(SUM(hits), 0) FROM response_cache"
        args: tuple[Any, ...] = ()
        if tenant is not None:
            sql += " WHERE tenant = ?"
            args = (tenant,)
        n, hits = self.conn.execute(sql, args).fetchone()
        return {"entries": int(n), "hits": int(hits)}


def _q(conn: sqlite3.Connection) -> limits.Query:
    """runner/store/limits.py's statements, run on this connection."""

    def run(sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return list(conn.execute(sql, args).fetchall())

    return run


def _no_lock(key: str) -> None:
    """SQLite's BEGIN IMMEDIATE already excludes every other writer: nothing more to lock."""


_COLS: dict[str, list[str]] = {}


@functools.lru_cache(maxsize=64)
def _ledger_insert(cols: tuple[str, ...], *, done_seq: bool = False) -> str:
    """INSERT OR REPLACE of a ledger row with these columns (and, for a done row, its done_seq
    from one more parameter, the run id). One string per shape: queued rows of one shape are
    written by one executemany."""
    marks = ", ".join("?" for _ in cols)
    if done_seq:
        return (
            f"INSERT OR REPLACE INTO ledger ({', '.join(cols)}, done_seq) "
            f"VALUES ({marks}, {_done_seq('?')})"
        )
    return f"INSERT OR REPLACE INTO ledger ({', '.join(cols)}) VALUES ({marks})"


_LEDGER_COLS = (
    "key",
    "run_id",
    "node_id",
    "tool",
    "effect",
    "args",
    "status",
    "result",
    "error",
    "compensate",
    "spec_dir",
    "undone",
    "created_at",
    "updated_at",
    "done_seq",
)


@functools.lru_cache(maxsize=16)
def _ledger_claim(cols: tuple[str, ...]) -> str:
    """An intent that takes its key only from nobody, a failed call, or its own run: a row
    another run holds is left as it is (rowcount 0). The replaced row starts as a new one."""
    sets = ", ".join(
        f"{c} = excluded.{c}" if c in cols else f"{c} = {'0' if c == 'undone' else 'NULL'}"
        for c in _LEDGER_COLS
        if c != "key"
    )
    return (
        f"INSERT INTO ledger ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
        f"ON CONFLICT(key) DO UPDATE SET {sets} "
        "WHERE ledger.status = 'failed' OR ledger.run_id = excluded.run_id"
    )


def _write_queued(
    conn: sqlite3.Connection, pending: list[tuple[str, str, tuple[Any, ...]]]
) -> None:
    """Queued rows, inside the caller's transaction: table by table, each table's in the order
    they were queued, and runs of one statement as one executemany.

    perf (issue 11): a statement executed one row at a time made a cursor and looked its SQL up
    per row. Regrouping by table keeps every outcome: no queued statement reads another table
    (the subqueries for `seq` and `done_seq` read their own), and the transaction is atomic.
    """
    by_table: dict[str, list[tuple[str, tuple[Any, ...]]]] = {}
    for table, sql, params in pending:
        rows = by_table.get(table)
        if rows is None:
            rows = by_table[table] = []
        rows.append((sql, params))
    for rows in by_table.values():
        start = 0
        while start < len(rows):
            sql = rows[start][0]
            end = start + 1
            while end < len(rows) and rows[end][0] == sql:
                end += 1
            if end - start == 1:
                conn.execute(sql, rows[start][1])
            else:
                conn.executemany(sql, [params for _, params in rows[start:end]])
            start = end


def _cols(conn: sqlite3.Connection, table: str) -> list[str]:
    # perf (issue 11): every ledger read (one per tool call) ran PRAGMA table_info; columns are
    # fixed once _open has migrated a store to SCHEMA_VERSION, as _RUN_COLS below relies on too
    cols = _COLS.get(table)
    if cols is None:
        cols = [d[1] for d in conn.execute(f"PRAGMA table_info({table})")]
        if cols:
            _COLS[table] = cols
    return cols


def _ledger_row(conn: sqlite3.Connection, row: tuple[Any, ...]) -> dict[str, Any]:
    d = dict(zip(_cols(conn, "ledger"), row, strict=True))
    d["args"] = loads(d["args"])
    d["result"] = loads(d["result"])
    d["error"] = unseal_text(d["error"])
    return d


def _approval_row(conn: sqlite3.Connection, row: tuple[Any, ...]) -> dict[str, Any]:
    d = dict(zip(_cols(conn, "approvals"), row, strict=True))
    for k in ("assignees", "decision_schema", "decision"):
        d[k] = loads(d[k])
    d["summary"], d["reason"] = unseal_text(d["summary"]), unseal_text(d["reason"])
    return d


def _identity_row(names: list[str], row: tuple[Any, ...]) -> dict[str, Any]:
    d = dict(zip(names, row, strict=True))
    for k in ("roles", "tenants", "scopes"):
        d[k] = loads(d[k]) or []
    d["live"] = bool(d["live"])
    return d


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


_RUN_COLS: list[str] = []


def _batch_row(d: dict[str, Any]) -> dict[str, Any]:
    d["options"] = loads(d["options"])
    return d


def _run_row(conn: sqlite3.Connection, row: tuple[Any, ...]) -> RunRow:
    if not _RUN_COLS:
        # one assignment, not extend: two threads reading their first run at once (a server's
        # webhook runs) would otherwise both append, and every later read would fail
        _RUN_COLS[:] = [d[1] for d in conn.execute("PRAGMA table_info(runs)")]
    d = dict(zip(_RUN_COLS, row, strict=True))
    d["inputs"] = loads(d["inputs"])
    d["outputs"] = loads(d["outputs"])
    d["options"] = loads(d["options"])
    d["reason"] = unseal_text(d["reason"])
    d["kill_requested"] = bool(d["kill_requested"])
    return RunRow(**d)


def _unseal_reason(d: dict[str, Any]) -> dict[str, Any]:
    d["reason"] = unseal_text(d["reason"])  # sealed as written: a reason may quote a value
    return d
