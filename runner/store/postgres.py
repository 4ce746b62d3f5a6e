"""The PostgreSQL run store: one database shared by every process on every machine.

The schema is SQLite's (runner/store/sqlite.py) translated, with the same version numbers;
`flowrun_meta` marks a database as ours (app, schema version), as SQLite's application_id and
user_version do. Group commit works as in the SQLite store (see SqliteStore): inside an event
loop the rows a running node writes as it goes (events, call records, its checkpoint, ledger
rows of calls without side effects, spend settlements, the run's outcome) are queued and
committed together by the next write transaction, `barrier`, a read of their table, or within
GROUP_COMMIT_S; a write's intent, an approval, a decision, a kill and the switches commit
before they return, with everything queued before them. Guarantees across processes come
from the database: a run is claimed, a ledger key taken and an approval decided by one
conditional statement (row locks; the loser changes nothing), a run's spend reservations are
serialized by an advisory lock, the writes switch and kill flag are rows read at each node
boundary.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

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
from runner.store.seal import seal, unseal_text, use_key_beside

APP = "flowrun"
SCHEMA_VERSION = 9  # the same numbers as the SQLite store's migrations
LOCK_ID = 0x464C5752  # "FLWR": the advisory lock migrations take
CONNECT_TIMEOUT_S = 10
POOL_MAX = 4

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE flowrun_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE runs (
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
            cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            tokens BIGINT NOT NULL DEFAULT 0,
            llm_calls BIGINT NOT NULL DEFAULT 0,
            tool_calls BIGINT NOT NULL DEFAULT 0,
            duration_s DOUBLE PRECISION NOT NULL DEFAULT 0,
            pid BIGINT,
            host TEXT,
            kill_requested INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION
        )""",
        "CREATE INDEX runs_status ON runs(status, created_at)",
        "CREATE INDEX runs_workflow ON runs(workflow, created_at)",
        """CREATE TABLE node_results (
            run_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            status TEXT NOT NULL,
            result TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (run_id, node_id, seq)
        )""",
        """CREATE TABLE events (
            id BIGSERIAL PRIMARY KEY,
            run_id TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL,
            type TEXT NOT NULL,
            node_id TEXT,
            data TEXT
        )""",
        "CREATE INDEX events_run ON events(run_id, id)",
        """CREATE TABLE approvals (
            run_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            status TEXT NOT NULL,
            summary TEXT,
            assignees TEXT,
            decision_schema TEXT,
            requested_at DOUBLE PRECISION NOT NULL,
            timeout_at DOUBLE PRECISION,
            on_timeout TEXT,
            decided_by TEXT,
            decided_at DOUBLE PRECISION,
            decision TEXT,
            reason TEXT,
            PRIMARY KEY (run_id, node_id)
        )""",
        "CREATE INDEX approvals_status ON approvals(status, requested_at)",
        """CREATE TABLE ledger (
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
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            done_seq INTEGER
        )""",
        "CREATE INDEX ledger_run ON ledger(run_id, done_seq)",
        """CREATE TABLE switches (
            name TEXT PRIMARY KEY, value TEXT NOT NULL, changed_by TEXT,
            changed_at DOUBLE PRECISION
        )""",
    ],
    2: [
        """CREATE TABLE calls (
            id BIGSERIAL PRIMARY KEY,
            run_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            idx INTEGER,
            attempt INTEGER NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            data TEXT NOT NULL,
            error TEXT,
            started_at DOUBLE PRECISION NOT NULL,
            duration_s DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX calls_run ON calls(run_id, id)",
    ],
    3: [
        """CREATE TABLE bundles (
            digest TEXT PRIMARY KEY,
            entry TEXT NOT NULL,
            files TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        )""",
        "ALTER TABLE runs ADD COLUMN bundle_digest TEXT",
    ],
    # model-call spend (runner/engine/budget.py): one row per call, reserved before it is made
    4: [
        """CREATE TABLE IF NOT EXISTS spend (
            id BIGSERIAL PRIMARY KEY,
            run_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            at TEXT NOT NULL,
            model TEXT NOT NULL,
            status TEXT NOT NULL,
            usd DOUBLE PRECISION NOT NULL,
            input_tokens BIGINT NOT NULL,
            output_tokens BIGINT NOT NULL,
            reserved_usd DOUBLE PRECISION NOT NULL,
            reserved_tokens BIGINT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS spend_run ON spend(run_id, node_id)",
    ],
    # batch runs (runner/runs/batch.py): a batch and its lines, each line linked to its run
    5: [
        """CREATE TABLE IF NOT EXISTS batches (
            batch_id TEXT PRIMARY KEY,
            workflow TEXT NOT NULL,
            spec_path TEXT NOT NULL,
            data_path TEXT NOT NULL,
            options TEXT NOT NULL,
            total BIGINT NOT NULL,
            status TEXT NOT NULL,
            pid BIGINT,
            host TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION
        )""",
        "CREATE INDEX IF NOT EXISTS batches_created ON batches(created_at)",
        """CREATE TABLE IF NOT EXISTS batch_lines (
            batch_id TEXT NOT NULL,
            line BIGINT NOT NULL,
            inputs TEXT,
            run_id TEXT,
            status TEXT NOT NULL,
            reason TEXT,
            updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (batch_id, line)
        )""",
        "CREATE INDEX IF NOT EXISTS batch_lines_run ON batch_lines(run_id)",
    ],
    # identities (runner/runs/identity.py): users and clients with a hashed token each; an
    # approval records whether the run's own requester may decide it
    6: [
        """CREATE TABLE IF NOT EXISTS identities (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            roles TEXT NOT NULL,
            tenants TEXT NOT NULL,
            scopes TEXT NOT NULL,
            live BIGINT NOT NULL DEFAULT 0,
            token_sha256 TEXT NOT NULL UNIQUE,
            created_at DOUBLE PRECISION NOT NULL,
            created_by TEXT,
            revoked_at DOUBLE PRECISION,
            revoked_by TEXT
        )""",
        "ALTER TABLE approvals ADD COLUMN IF NOT EXISTS allow_self BIGINT NOT NULL DEFAULT 0",
    ],
    # webhook intake and approval notices (runner/runs/intake.py, runner/runs/notify.py)
    7: [
        """CREATE TABLE IF NOT EXISTS deliveries (
            hook TEXT NOT NULL,
            delivery_id TEXT NOT NULL,
            run_id TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (hook, delivery_id)
        )""",
        """CREATE TABLE IF NOT EXISTS rate_windows (
            key TEXT PRIMARY KEY,
            window_start DOUBLE PRECISION NOT NULL,
            count BIGINT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS notices (
            run_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts BIGINT NOT NULL,
            error TEXT,
            updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (run_id, node_id, kind, target)
        )""",
    ],
    # readiness and autonomy (runner/runs/readiness.py): recorded eval results, and the
    # autonomy level of a workflow's tool (tenant '' for every tenant)
    8: [
        """CREATE TABLE IF NOT EXISTS autonomy (
            workflow TEXT NOT NULL,
            tool TEXT NOT NULL,
            tenant TEXT NOT NULL,
            level TEXT NOT NULL,
            changed_by TEXT,
            changed_at DOUBLE PRECISION NOT NULL,
            reason TEXT,
            PRIMARY KEY (workflow, tool, tenant)
        )""",
        """CREATE TABLE IF NOT EXISTS eval_results (
            id BIGSERIAL PRIMARY KEY,
            workflow TEXT NOT NULL,
            spec_digest TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            passed INTEGER NOT NULL,
            summary TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS eval_results_workflow ON eval_results(workflow, id)",
        "ALTER TABLE calls ADD COLUMN IF NOT EXISTS trace_id TEXT",
    ],
    # spend and rate control across runs (runner/store/limits.py, docs/budgets.md), as in the
    # SQLite store
    9: [
        "ALTER TABLE spend ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'llm'",
        "ALTER TABLE spend ADD COLUMN IF NOT EXISTS tenant TEXT",
        "ALTER TABLE spend ADD COLUMN IF NOT EXISTS workflow TEXT",
        "ALTER TABLE spend ADD COLUMN IF NOT EXISTS tool TEXT",
        "UPDATE spend SET tenant = runs.tenant, workflow = runs.workflow FROM runs "
        "WHERE runs.run_id = spend.run_id",
        "CREATE INDEX IF NOT EXISTS spend_created ON spend(created_at)",
        "CREATE INDEX IF NOT EXISTS spend_tenant ON spend(tenant, created_at)",
        "CREATE INDEX IF NOT EXISTS spend_workflow ON spend(workflow, created_at)",
        """CREATE TABLE IF NOT EXISTS budgets (
            id BIGSERIAL PRIMARY KEY,
            body TEXT NOT NULL,
            text TEXT NOT NULL,
            source TEXT NOT NULL,
            set_by TEXT,
            set_at DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS rate_hits (
            id BIGSERIAL PRIMARY KEY,
            key TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            amount BIGINT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS rate_hits_key ON rate_hits(key, at)",
        """CREATE TABLE IF NOT EXISTS response_cache (
            key TEXT PRIMARY KEY,
            tenant TEXT,
            model TEXT NOT NULL,
            response TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            hits BIGINT NOT NULL DEFAULT 0,
            last_hit_at DOUBLE PRECISION
        )""",
    ],
}
_SPEND_COUNTED = "status != 'released' AND kind = 'llm'"
# a run's totals against its caps: its billed tool calls count in its dollars, not its tokens
_RUN_TOTALS = (
    "SELECT COALESCE(SUM(usd), 0), "
    "COALESCE(SUM(CASE WHEN kind = 'llm' THEN input_tokens + output_tokens ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN kind = 'llm' THEN 1 ELSE 0 END), 0) "
    "FROM spend WHERE run_id = %s AND status != 'released'"
)
_LEDGER_DONE = (
    "UPDATE ledger SET status = 'done', result = %s, error = NULL, done_seq = "
    "(SELECT COALESCE(MAX(l.done_seq), 0) + 1 FROM ledger l WHERE l.run_id = ledger.run_id), "
    "updated_at = %s WHERE key = %s"
)
# group commit: the longest a deferred row waits for its transaction (as the SQLite store)
GROUP_COMMIT_S = 0.02  # as the SQLite store counts

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
_LEDGER_DEFAULTS = {"undone": "0"}  # a replaced row's other columns start as a new row's
_RUN_COLS = ", ".join(RunRow.__dataclass_fields__)
_EVENT_SQL = "INSERT INTO events (run_id, ts, type, node_id, data) VALUES (%s, %s, %s, %s, %s)"

# one pool per server and database in a process: the console opens a store per request
_POOLS: dict[str, ConnectionPool[Any]] = {}
_CHECKED: set[str] = set()  # conninfos whose schema this process has checked (and migrated)
_POOLS_LOCK = threading.Lock()


@atexit.register
def _close_pools() -> None:
    for pool in list(_POOLS.values()):
        with suppress(Exception):
            pool.close(timeout=1)
    _POOLS.clear()


def describe(url: str) -> tuple[str, str, str]:
    """(host, database, the URL without its password) of a store URL, with the PG* variables
    libpq would use for what the URL leaves out."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as e:
        raise StoreError(f"--store: {_strip(url)!r} is not a PostgreSQL URL ({e})") from None
    host = str(params.get("host") or os.environ.get("PGHOST") or "localhost")
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    user = params.get("user") or os.environ.get("PGUSER")
    db = str(params.get("dbname") or os.environ.get("PGDATABASE") or user or "postgres")
    return f"{host}:{port}", db, _strip(url)


def _strip(url: str) -> str:
    """`url` without a password (what may be shown, logged or handed to other processes)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return url.split("@")[-1]
    if "password" not in params:
        return url
    params.pop("password")
    scheme = url.split("://", 1)[0]
    user = params.pop("user", None)
    host = params.pop("host", "")
    port = params.pop("port", None)
    db = params.pop("dbname", "")
    auth = f"{user}@" if user else ""
    rest = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{scheme}://{auth}{host}{':' + str(port) if port else ''}/{db}" + (
        f"?{rest}" if rest else ""
    )


class PostgresStore(Store):
    """A flowrun store in a PostgreSQL database (`postgresql://user@host:port/db`)."""

    def __init__(self, target: str | os.PathLike[str], *, create: bool = True) -> None:
        url = str(target)
        host, db, shown = describe(url)
        self._host, self._db = host, db
        self.target = shown
        self.location = f"PostgreSQL database {db!r} on {host}"
        # what stays on this machine (transcripts) lives where a SQLite store's folder would
        self.path = Path(os.environ.get("FLOWRUN_STORE_DIR") or ".flowrun") / "postgres"
        use_key_beside(None)  # FLOWRUN_SEAL_KEY, else ~/.flowrun/seal.key
        self._conninfo = make_conninfo(url, connect_timeout=CONNECT_TIMEOUT_S)
        self._new_runs: dict[str, set[str]] = {}
        # perf (issue 19): bundles this store has written; a bundle is content-addressed and
        # never changed or deleted, and sealing its files (a scan of every prompt and spec text)
        # was a tenth of starting a run
        self._bundles: set[str] = set()
        self._lock = threading.RLock()
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._dirty: set[str] = set()
        self._dirty_keys: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._barrier: asyncio.Future[None] | None = None
        if self._conninfo not in _CHECKED:
            self._check(create=create)
        with _POOLS_LOCK:
            pool = _POOLS.get(self._conninfo)
            if pool is None:
                pool = _POOLS[self._conninfo] = ConnectionPool(
                    self._conninfo,
                    min_size=1,
                    max_size=POOL_MAX,
                    timeout=CONNECT_TIMEOUT_S * 3,
                    open=True,
                    name=f"flowrun {db}",
                )
        self._pool = pool
        _OPEN.add(self)

    # -- connections -----------------------------------------------------------------------
    def _refuse(self, cause: str, hint: str | None = None) -> StoreError:
        return StoreError(
            f"PostgreSQL store on host {self._host}, database {self._db!r}: {cause}", hint=hint
        )

    def _check(self, *, create: bool) -> None:
        """Connect once, refuse what is not ours or too new, create or migrate the schema."""
        try:
            with psycopg.connect(self._conninfo) as conn:
                self._migrate(conn, create=create)
        except psycopg.OperationalError as e:
            raise self._refuse(
                _cause(e),
                hint="check the URL, the server and the credentials (URL or PGPASSWORD, ~/.pgpass)",
            ) from None
        except psycopg.Error as e:
            raise self._refuse(_cause(e)) from None
        _CHECKED.add(self._conninfo)

    def _migrate(self, conn: psycopg.Connection[Any], *, create: bool) -> None:
        with conn.transaction():
            tables = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()"
                )
            }
            version = _version(conn) if "flowrun_meta" in tables else 0
        if version > SCHEMA_VERSION:
            raise self._refuse(
                f"store schema version {version}; this flowrun reads up to {SCHEMA_VERSION}",
                hint="upgrade flowrun to use this store",
            )
        if "flowrun_meta" not in tables and tables:
            names = ", ".join(sorted(tables)[:5])
            raise self._refuse(
                f"the database holds another application's tables ({names}), not a flowrun store",
                hint="point --store at a flowrun store or at a new, empty database",
            )
        if version == 0 and not create:
            raise self._refuse(
                "no flowrun store in this database",
                hint="run a workflow first, or point --store / FLOWRUN_STORE at the store",
            )
        if version == SCHEMA_VERSION:
            return
        with conn.transaction():
            # one process migrates; the others wait here and then find the new version
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            current = 0
            if conn.execute("SELECT to_regclass('flowrun_meta')").fetchone() != (None,):
                current = _version(conn)
            for v in range(current + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[v]:
                    conn.execute(stmt)
            if current < SCHEMA_VERSION:
                conn.execute(
                    "INSERT INTO flowrun_meta (key, value) VALUES ('app', %s), "
                    "('schema_version', %s) ON CONFLICT (key) DO UPDATE SET value = "
                    "EXCLUDED.value",
                    (APP, str(SCHEMA_VERSION)),
                )

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; its transaction commits when the block ends without error."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as e:
            raise self._refuse(f"no connection to the server ({e})") from None
        except psycopg.OperationalError as e:
            raise self._refuse(_cause(e)) from None

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """A write transaction; rows queued (deferred) so far are written first, in it."""
        with self._lock:
            pending, self._pending = self._pending, []
            dirty, self._dirty = self._dirty, set()
            keys, self._dirty_keys = self._dirty_keys, set()
            if pending and self._timer is not None:  # its rows are in this transaction
                self._timer.cancel()
                self._timer = None
            try:
                with self._conn() as conn, conn.transaction():
                    if pending:
                        _write_queued(conn, pending)
                    yield conn
            except BaseException:
                # the queued rows were fine: they wait for the next transaction
                self._pending[:0] = pending
                self._dirty |= dirty
                self._dirty_keys |= keys
                raise

    @contextmanager
    def _read(self, table: str) -> Iterator[psycopg.Connection[Any]]:
        """A connection to read `table` with: its queued rows are committed first."""
        if table in self._dirty:
            self.flush()
        with self._conn() as conn:
            yield conn

    def _defer(
        self, table: str, sql: str, params: tuple[Any, ...], *, key: str | None = None
    ) -> None:
        """Queue a row for the next commit (group commit, as the SQLite store does: see its
        class), or write it now when no event loop runs here."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            with self._tx() as c:
                c.execute(sql, params)
            return
        with self._lock:
            self._pending.append((sql, params))
            self._dirty.add(table)
            if key is not None:
                self._dirty_keys.add(key)
            if self._timer is None or self._timer_loop is not loop:
                self._timer = loop.call_later(GROUP_COMMIT_S, self._timed_flush)
                self._timer_loop = loop

    def _timed_flush(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Commit every queued row now (one transaction)."""
        if self._pending:
            with self._tx():
                pass

    async def barrier(self) -> None:
        """Wait until every row queued so far is committed; callers arriving meanwhile share
        the commit."""
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

    def close(self) -> None:
        """Commit what is queued; the process's pool for this database stays open for other
        stores (closed at exit)."""
        self.flush()
        _OPEN.discard(self)

    # -- runs ------------------------------------------------------------------------------
    def create_run(self, *, bundle: dict[str, Any] | None = None, **row: Any) -> None:
        now = time.time()
        row = {**row, "created_at": now, "updated_at": now}
        row["inputs"] = dumps(row["inputs"])
        row["options"] = dumps(row.get("options") or {})
        if bundle is not None:
            row["bundle_digest"] = bundle["digest"]
        cols = ", ".join(row)
        marks = ", ".join("%s" for _ in row)
        with self._tx() as c:
            if bundle is not None and bundle["digest"] not in self._bundles:
                c.execute(
                    "INSERT INTO bundles (digest, entry, files, created_at) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (bundle["digest"], bundle["entry"], dumps(bundle["files"]), now),
                )
            try:
                with c.transaction():
                    c.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(row.values()))
            except psycopg.errors.UniqueViolation:
                raise DuplicateRun(f"a run with id {row['run_id']!r} already exists") from None
            c.execute(
                "INSERT INTO events (run_id, ts, type, data) VALUES (%s, %s, 'run_created', %s)",
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
        sets = ", ".join(f"{k} = %s" for k in fields)
        with self._tx() as c:
            c.execute(f"UPDATE runs SET {sets} WHERE run_id = %s", (*fields.values(), run_id))

    def finish_run(self, run_id: str, *, add_duration_s: float, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        if "outputs" in fields:
            fields["outputs"] = dumps(fields["outputs"])
        if isinstance(fields.get("reason"), str):
            fields["reason"] = seal(fields["reason"])
        sets = ", ".join(f"{k} = %s" for k in fields)
        self.run_ended(run_id)
        self._defer(
            "runs",
            f"UPDATE runs SET {sets}, duration_s = duration_s + %s WHERE run_id = %s",
            (*fields.values(), add_duration_s, run_id),
        )

    def run_ended(self, run_id: str) -> None:
        self._new_runs.pop(run_id, None)

    def claim_run(self, run_id: str, *, was_status: str, was_pid: int | None, host: str) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "UPDATE runs SET status = 'running', pid = %s, host = %s, updated_at = %s "
                "WHERE run_id = %s AND status = %s AND COALESCE(pid, -1) = COALESCE(%s, -1)",
                (os.getpid(), host, time.time(), run_id, was_status, was_pid),
            )
            return cur.rowcount == 1

    def get_run(self, run_id: str) -> RunRow:
        with self._read("runs") as c:
            row = c.execute(f"SELECT {_RUN_COLS} FROM runs WHERE run_id = %s", (run_id,)).fetchone()
            if row is None:
                near = c.execute(
                    "SELECT run_id FROM runs WHERE run_id LIKE %s ORDER BY created_at DESC LIMIT 1",
                    (_like_prefix(run_id[:10]),),
                ).fetchone()
                raise NotFound(
                    f"no run {run_id!r} in {self.location}",
                    hint=f"did you mean {near[0]!r}?" if near else "list runs with `flowrun runs`",
                )
        return _run_row(row)

    def get_bundle(self, digest: str) -> dict[str, Any]:
        with self._read("bundles") as c:
            row = c.execute(
                "SELECT entry, files FROM bundles WHERE digest = %s", (digest,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no plan bundle {digest[:12]} in {self.location}")
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
                where.append(f"{col} = %s")
                args.append(val)
        sql = f"SELECT {_RUN_COLS} FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC LIMIT %s"
        with self._read("runs") as c:
            rows = c.execute(sql, (*args, limit)).fetchall()
        return [_run_row(r) for r in rows]

    def workflows(self) -> list[str]:
        with self._read("runs") as c:
            return sorted(r[0] for r in c.execute("SELECT DISTINCT workflow FROM runs"))

    def status_counts(self) -> dict[str, int]:
        with self._read("runs") as c:
            rows = c.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
        return {s: int(n) for s, n in rows}

    def finished_runs(
        self,
        statuses: Sequence[str],
        *,
        workflow: str | None = None,
        tenant: str | None = None,
        since: float | None = None,
    ) -> list[FinishedRun]:
        where = ["status = ANY(%s)"]
        args: list[Any] = [list(statuses)]
        for col, val in (("workflow", workflow), ("tenant", tenant)):
            if val is not None:
                where.append(f"{col} = %s")
                args.append(val)
        if since is not None:
            where.append("created_at >= %s")
            args.append(since)
        sql = "SELECT run_id, status, duration_s, cost_usd FROM runs WHERE " + " AND ".join(where)
        with self._read("runs") as c:
            rows = c.execute(sql, args).fetchall()
        return [FinishedRun(*r) for r in rows]

    def tool_call_counts(self, run_ids: Sequence[str]) -> tuple[int, int]:
        if not run_ids:
            return 0, 0
        with self._read("calls") as c:
            n, failed = c.execute(
                "SELECT COUNT(*), COUNT(error) FROM calls WHERE kind = 'tool' AND run_id = ANY(%s)",
                (list(run_ids),),
            ).fetchone() or (0, 0)
        return int(n), int(failed)

    def runs_with_event(self, type_: str, run_ids: Sequence[str]) -> int:
        if not run_ids:
            return 0
        with self._read("events") as c:
            row = c.execute(
                "SELECT COUNT(DISTINCT run_id) FROM events WHERE type = %s AND run_id = ANY(%s)",
                (type_, list(run_ids)),
            ).fetchone()
        return int(row[0]) if row else 0

    def request_kill(self, run_id: str, by: str | None) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET kill_requested = 1, updated_at = %s WHERE run_id = %s",
                (time.time(), run_id),
            )
            c.execute(
                "INSERT INTO events (run_id, ts, type, data) VALUES (%s, %s, 'kill_requested', %s)",
                (run_id, time.time(), dumps({"by": by})),
            )

    def kill_requested(self, run_id: str) -> bool:
        with self._read("runs") as c:
            row = c.execute(
                "SELECT kill_requested FROM runs WHERE run_id = %s", (run_id,)
            ).fetchone()
        return bool(row and row[0])

    # -- node results, events, calls -------------------------------------------------------
    def save_node(self, run_id: str, node_id: str, status: str, result: dict[str, Any]) -> None:
        now = time.time()
        self._defer(
            "node_results",
            "INSERT INTO node_results (run_id, node_id, seq, status, result, created_at) "
            "SELECT %s, %s, COALESCE(MAX(seq), 0) + 1, %s, %s, %s FROM node_results "
            "WHERE run_id = %s AND node_id = %s",
            (run_id, node_id, status, dumps(result), now, run_id, node_id),
        )
        self._defer(
            "events", _EVENT_SQL, (run_id, now, "node_finished", node_id, dumps({"status": status}))
        )

    def node_results(self, run_id: str) -> dict[str, dict[str, Any]]:
        with self._read("node_results") as c:
            rows = c.execute(
                "SELECT node_id, result FROM node_results WHERE run_id = %s ORDER BY node_id, seq",
                (run_id,),
            ).fetchall()
        return {node_id: loads(result) for node_id, result in rows}

    def event(self, run_id: str, type_: str, node_id: str | None = None, **data: Any) -> None:
        self._defer("events", _EVENT_SQL, (run_id, time.time(), type_, node_id, dumps(data)))

    def events(self, run_id: str | None = None, type_: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if run_id is not None:
            where.append("run_id = %s")
            args.append(run_id)
        if type_ is not None:
            where.append("type = %s")
            args.append(type_)
        sql = "SELECT id, run_id, ts, type, node_id, data FROM events"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        with self._read("events") as c:
            rows = c.execute(sql, args).fetchall()
        return [
            {"id": i, "run_id": r, "ts": ts, "type": t, "node_id": n, "data": loads(d)}
            for i, r, ts, t, n, d in rows
        ]

    def record_call(self, **row: Any) -> None:
        row = {**row, "data": dumps(row["data"])}
        if isinstance(row.get("error"), str):
            row["error"] = seal(row["error"])
        cols = ", ".join(row)
        marks = ", ".join("%s" for _ in row)
        self._defer("calls", f"INSERT INTO calls ({cols}) VALUES ({marks})", tuple(row.values()))

    def calls(self, run_id: str) -> list[dict[str, Any]]:
        with self._read("calls") as c, c.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT * FROM calls WHERE run_id = %s ORDER BY id", (run_id,)
            ).fetchall()
        for d in rows:
            d["data"] = loads(d["data"])
            d["error"] = unseal_text(d.get("error"))
        return rows

    # -- the idempotency ledger ------------------------------------------------------------
    def ledger_get(self, key: str, *, run_id: str | None = None) -> dict[str, Any] | None:
        made = self._new_runs.get(run_id) if run_id is not None else None
        if made is not None and key not in made:
            return None
        if key in self._dirty_keys:  # only this key's queued rows matter to this read
            self.flush()
        with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM ledger WHERE key = %s", (key,)).fetchone()
        return _ledger_row(row) if row else None

    def ledger_intent(self, key: str, *, defer: bool = False, **row: Any) -> None:
        """Record that a call is about to happen. A write's intent commits before its side
        effect; `defer` (calls without side effects) lets it ride with the next commit. A row
        under the same key is replaced, as SQLite's INSERT OR REPLACE does."""
        now = time.time()
        row = {"key": key, **row, "status": "intent", "created_at": now, "updated_at": now}
        row["args"] = dumps(row["args"])
        made = self._new_runs.get(str(row.get("run_id")))
        if made is not None:
            made.add(key)
        cols = tuple(row)
        sets = ", ".join(
            f"{c} = EXCLUDED.{c}" if c in cols else f"{c} = {_LEDGER_DEFAULTS.get(c, 'NULL')}"
            for c in _LEDGER_COLS
            if c != "key"
        )
        sql = (
            f"INSERT INTO ledger ({', '.join(cols)}) VALUES ({', '.join('%s' for _ in cols)}) "
            f"ON CONFLICT (key) DO UPDATE SET {sets}"
        )
        if defer:
            self._defer("ledger", sql, tuple(row.values()), key=key)
            return
        with self._tx() as c:
            c.execute(sql, tuple(row.values()))

    def ledger_claim(self, key: str, **row: Any) -> bool:
        """One INSERT ... ON CONFLICT: a racing claimant waits on the winner's row lock, then
        finds the key held by another run and changes nothing."""
        now = time.time()
        row = {"key": key, **row, "status": "intent", "created_at": now, "updated_at": now}
        row["args"] = dumps(row["args"])
        made = self._new_runs.get(str(row.get("run_id")))
        if made is not None:
            made.add(key)
        cols = tuple(row)
        sets = ", ".join(
            f"{c} = EXCLUDED.{c}" if c in cols else f"{c} = {_LEDGER_DEFAULTS.get(c, 'NULL')}"
            for c in _LEDGER_COLS
            if c != "key"
        )
        with self._tx() as c:
            cur = c.execute(
                f"INSERT INTO ledger ({', '.join(cols)}) "
                f"VALUES ({', '.join('%s' for _ in cols)}) "
                f"ON CONFLICT (key) DO UPDATE SET {sets} "
                "WHERE ledger.status = 'failed' OR ledger.run_id = EXCLUDED.run_id",
                tuple(row.values()),
            )
            return cur.rowcount == 1

    def ledger_done(self, key: str, result: Any, *, defer: bool = False) -> None:
        # done_seq orders the completed effects of one run (undo walks them newest first)
        params = (dumps(result), time.time(), key)
        if defer:
            self._defer("ledger", _LEDGER_DONE, params, key=key)
            return
        with self._tx() as c:
            c.execute(_LEDGER_DONE, params)

    def ledger_failed(self, key: str, error: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE ledger SET status = 'failed', error = %s, updated_at = %s WHERE key = %s",
                (seal(error), time.time(), key),
            )

    def ledger_for_run(self, run_id: str) -> list[dict[str, Any]]:
        with self._read("ledger") as c, c.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT * FROM ledger WHERE run_id = %s ORDER BY COALESCE(done_seq, 0), created_at",
                (run_id,),
            ).fetchall()
        return [_ledger_row(r) for r in rows]

    def ledger_mark_undone(self, key: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE ledger SET undone = 1, updated_at = %s WHERE key = %s", (time.time(), key)
            )

    # -- model-call spend (runner/engine/budget.py) ----------------------------------------
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
        """Reserve one call against the run's caps and every ceiling that selects it: the run's
        reservations are taken one at a time (a transaction-scoped advisory lock on the run id),
        then each applicable ceiling's lock, in sorted order (runner/store/limits.py), on every
        machine."""
        now = time.time()
        kind = call.kind if call is not None else "llm"
        tokens = input_tokens + output_tokens if kind == "llm" else 0
        with self._tx() as c:
            c.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (run_id,))
            row = c.execute(_RUN_TOTALS, (run_id,)).fetchone()
            used_usd, used_tokens, used_calls = row if row else (0.0, 0, 0)
            totals = {
                "usd": float(used_usd),
                "tokens": float(used_tokens),
                "llm_calls": int(used_calls),
            }
            want = {"usd": usd, "tokens": tokens, "llm_calls": 1 if kind == "llm" else 0}
            for dim, cap in caps.items():
                if want[dim] and totals[dim] + want[dim] > cap + (1e-12 if dim == "usd" else 0):
                    return None, totals
            if call is not None:
                budgets = limits.current_budgets(_q(c), self.target)
                ceilings = budgets.applicable(call)
                if ceilings:
                    wanted = {**want, "tool_calls": 1 if kind == "tool" else 0}
                    limits.check_ceilings(_q(c), _lock(c), ceilings, call, wanted, now)
            new = c.execute(
                "INSERT INTO spend (run_id, node_id, at, model, status, usd, input_tokens, "
                "output_tokens, reserved_usd, reserved_tokens, created_at, updated_at, kind, "
                "tenant, workflow, tool) "
                "VALUES (%s, %s, %s, %s, 'open', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "RETURNING id",
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
            ).fetchone()
            return (int(new[0]) if new else None), totals

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
        self._defer(
            "spend",
            "UPDATE spend SET status = %s, usd = COALESCE(%s, usd), "
            "input_tokens = COALESCE(%s, input_tokens), "
            "output_tokens = COALESCE(%s, output_tokens), "
            "model = COALESCE(%s, model), updated_at = %s WHERE id = %s",
            (status, usd, input_tokens, output_tokens, model, time.time(), row_id),
        )

    def spend_by_node(self, run_id: str, node_id: str | None = None) -> dict[str, dict[str, Any]]:
        sql = (
            "SELECT node_id, COUNT(*), COALESCE(SUM(usd), 0), COALESCE(SUM(input_tokens), 0), "
            f"COALESCE(SUM(output_tokens), 0) FROM spend WHERE run_id = %s AND {_SPEND_COUNTED}"
        )
        args: tuple[Any, ...] = (run_id,)
        if node_id is not None:
            sql += " AND node_id = %s"
            args = (run_id, node_id)
        with self._read("spend") as c:
            rows = c.execute(sql + " GROUP BY node_id", args).fetchall()
        return {
            n: {
                "llm_calls": int(k),
                "cost_usd": float(u),
                "input_tokens": int(i),
                "output_tokens": int(o),
            }
            for n, k, u, i, o in rows
        }

    def spend_rows(self, run_id: str) -> list[dict[str, Any]]:
        with self._read("spend") as c, c.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT node_id, at, model, status, usd, input_tokens, output_tokens, "
                "reserved_usd, reserved_tokens, kind FROM spend WHERE run_id = %s ORDER BY id",
                (run_id,),
            ).fetchall()

    # -- approvals -------------------------------------------------------------------------
    def approval_get(self, run_id: str, node_id: str) -> dict[str, Any] | None:
        with self._read("approvals") as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT * FROM approvals WHERE run_id = %s AND node_id = %s", (run_id, node_id)
            ).fetchone()
        return _approval_row(row) if row else None

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
        marks = ", ".join("%s" for _ in row)
        with self._tx() as c:
            c.execute(
                f"INSERT INTO approvals ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                tuple(row.values()),
            )
            c.execute(
                "INSERT INTO events (run_id, ts, type, node_id, data) "
                "VALUES (%s, %s, 'approval_requested', %s, %s)",
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
        """Decide a waiting approval exactly once: of two deciders, the second UPDATE waits on
        the first's row lock, then finds the row no longer waiting and changes nothing."""
        with self._tx() as c:
            cur = c.execute(
                "UPDATE approvals SET status = %s, decided_by = %s, decided_at = %s, "
                "decision = %s, reason = %s "
                "WHERE run_id = %s AND node_id = %s AND status = 'waiting'",
                (status, by, time.time(), dumps(decision), seal(reason), run_id, node_id),
            )
            if cur.rowcount == 0:
                row = c.execute(
                    "SELECT status, decided_by FROM approvals WHERE run_id = %s AND node_id = %s",
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
                _EVENT_SQL,
                (
                    run_id,
                    time.time(),
                    f"approval_{status}",
                    node_id,
                    dumps({"by": by, "reason": reason}),
                ),
            )

    def inbox(self) -> list[dict[str, Any]]:
        with self._read("approvals") as c, c.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT * FROM approvals WHERE status = 'waiting' "
                "ORDER BY requested_at, run_id, node_id"
            ).fetchall()
        return [_approval_row(r) for r in rows]

    # -- batches (runner/runs/batch.py) -----------------------------------------------------
    def batch_create(self, batch_id: str, *, lines: Sequence[dict[str, Any]], **row: Any) -> None:
        now = time.time()
        batch = {**row, "batch_id": batch_id, "total": len(lines), "created_at": now}
        batch["options"] = dumps(batch.get("options") or {})
        batch["updated_at"] = now
        cols = ", ".join(batch)
        try:
            with self._tx() as c:
                c.execute(
                    f"INSERT INTO batches ({cols}) VALUES ({', '.join('%s' for _ in batch)})",
                    tuple(batch.values()),
                )
                with c.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO batch_lines (batch_id, line, inputs, status, reason, "
                        "updated_at) VALUES (%s, %s, %s, %s, %s, %s)",
                        [
                            (batch_id, x["line"], dumps(x.get("inputs")), x["status"],
                             seal(x.get("reason")), now)
                            for x in lines
                        ],
                    )  # fmt: skip
        except psycopg.errors.UniqueViolation:
            raise DuplicateRun(f"a batch with id {batch_id!r} already exists") from None

    def batch_get(self, batch_id: str) -> dict[str, Any]:
        with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM batches WHERE batch_id = %s", (batch_id,)).fetchone()
        if row is None:
            raise NotFound(f"no batch {batch_id!r} in {self.location}")
        return _batch_row(row)

    def batch_update(self, batch_id: str, **fields: Any) -> None:
        if "options" in fields:
            fields["options"] = dumps(fields["options"])
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = %s" for k in fields)
        with self._tx() as c:
            c.execute(
                f"UPDATE batches SET {sets} WHERE batch_id = %s", (*fields.values(), batch_id)
            )

    def list_batches(self, *, limit: int = 50) -> list[dict[str, Any]]:
        with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT * FROM batches ORDER BY created_at DESC, batch_id LIMIT %s", (limit,)
            ).fetchall()
        return [_batch_row(r) for r in rows]

    def batch_line_set(self, batch_id: str, line: int, **fields: Any) -> None:
        if isinstance(fields.get("reason"), str):
            fields["reason"] = seal(fields["reason"])  # a run's reason may quote a value
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = %s" for k in fields)
        with self._tx() as c:
            c.execute(
                f"UPDATE batch_lines SET {sets} WHERE batch_id = %s AND line = %s",
                (*fields.values(), batch_id, line),
            )

    def batch_lines(self, batch_id: str) -> list[dict[str, Any]]:
        with self._conn() as c:
            rows = c.execute(
                "SELECT line, inputs, run_id, status, reason FROM batch_lines "
                "WHERE batch_id = %s ORDER BY line",
                (batch_id,),
            ).fetchall()
        return [
            {
                "line": int(n),
                "inputs": loads(i),
                "run_id": r,
                "status": s,
                "reason": unseal_text(why),
            }
            for n, i, r, s, why in rows
        ]

    # -- copies ----------------------------------------------------------------------------
    def row_counts(self) -> dict[str, int]:
        self.flush()
        with self._conn() as c:
            return {
                t: int((c.execute(f"SELECT COUNT(*) FROM {t}").fetchone() or (0,))[0])
                for t in TABLES
            }

    def export_rows(self, table: str) -> list[dict[str, Any]]:
        if table not in TABLES:
            raise ValueError(f"no table {table!r}")
        self.flush()
        order = {"events": "id", "calls": "id", "spend": "id", "budgets": "id", "rate_hits": "id"}
        order_by = order.get(table, "ctid")
        with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            return cur.execute(f"SELECT * FROM {table} ORDER BY {order_by}").fetchall()

    def import_rows(self, tables: dict[str, list[dict[str, Any]]]) -> None:
        with self._tx() as c:
            for table, rows in tables.items():
                if table not in TABLES:
                    raise ValueError(f"no table {table!r}")
                by_shape: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
                for row in rows:
                    by_shape.setdefault(tuple(row), []).append(tuple(row.values()))
                with c.cursor() as cur:
                    for cols, values in by_shape.items():
                        cur.executemany(
                            f"INSERT INTO {table} ({', '.join(cols)}) "
                            f"VALUES ({', '.join('%s' for _ in cols)})",
                            values,
                        )
                # ids kept: the next id follows them
                if table in ("events", "calls", "spend", "eval_results", "budgets", "rate_hits"):
                    c.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"GREATEST((SELECT MAX(id) FROM {table}), 1))"
                    )

    # -- switches --------------------------------------------------------------------------
    def writes_enabled(self) -> bool:
        with self._read("switches") as c:
            row = c.execute("SELECT value FROM switches WHERE name = 'writes'").fetchone()
        return row is None or row[0] == "on"

    def set_writes(self, on: bool, by: str | None) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute(
                "INSERT INTO switches (name, value, changed_by, changed_at) "
                "VALUES ('writes', %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "value = EXCLUDED.value, changed_by = EXCLUDED.changed_by, "
                "changed_at = EXCLUDED.changed_at",
                ("on" if on else "off", by, now),
            )
            c.execute(
                "INSERT INTO events (run_id, ts, type, data) VALUES ('*', %s, 'writes_switch', %s)",
                (now, dumps({"on": on, "by": by})),
            )

    # -- identities (runner/runs/identity.py: who may act) -----------------------------------
    def identity_add(self, name: str, *, token_sha256: str, by: str | None, **row: Any) -> None:
        now = time.time()
        try:
            with self._tx() as c:
                c.execute(
                    "INSERT INTO identities (name, kind, roles, tenants, scopes, live, "
                    "token_sha256, created_at, created_by) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
                    "VALUES ('*', %s, 'identity_added', %s)",
                    (now, dumps({"identity": name, "kind": row["kind"], "by": by})),
                )
        except psycopg.errors.UniqueViolation:
            raise DuplicateRun(f"an identity named {name!r} already exists") from None

    def identity_get(self, name: str) -> dict[str, Any] | None:
        with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM identities WHERE name = %s", (name,)).fetchone()
        return _identity_row(row) if row else None

    def identity_by_token(self, token_sha256: str) -> dict[str, Any] | None:
        with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT * FROM identities WHERE token_sha256 = %s AND revoked_at IS NULL",
                (token_sha256,),
            ).fetchone()
        return _identity_row(row) if row else None

    def identities(self) -> list[dict[str, Any]]:
        with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            rows = cur.execute("SELECT * FROM identities ORDER BY name").fetchall()
        return [_identity_row(r) for r in rows]

    def identity_revoke(self, name: str, by: str | None) -> bool:
        now = time.time()
        with self._tx() as c:
            cur = c.execute(
                "UPDATE identities SET revoked_at = %s, revoked_by = %s "
                "WHERE name = %s AND revoked_at IS NULL",
                (now, by, name),
            )
            if cur.rowcount == 0:
                return False
            c.execute(
                "INSERT INTO events (run_id, ts, type, data) "
                "VALUES ('*', %s, 'identity_revoked', %s)",
                (now, dumps({"identity": name, "by": by})),
            )
        return True

    # -- intake and notifications (runner/runs/intake.py, runner/runs/notify.py) -------------
    def delivery_claim(self, hook: str, delivery_id: str, run_id: str) -> tuple[str, bool]:
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO deliveries (hook, delivery_id, run_id, received_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (hook, delivery_id) DO NOTHING",
                (hook, delivery_id, run_id, time.time()),
            )
            if cur.rowcount == 1:
                return run_id, True
            row = c.execute(
                "SELECT run_id FROM deliveries WHERE hook = %s AND delivery_id = %s",
                (hook, delivery_id),
            ).fetchone()
        assert row is not None  # the conflicting row commits before ON CONFLICT gives way
        return str(row[0]), False

    def delivery_release(self, hook: str, delivery_id: str, run_id: str) -> None:
        with self._tx() as c:
            c.execute(
                "DELETE FROM deliveries WHERE hook = %s AND delivery_id = %s AND run_id = %s",
                (hook, delivery_id, run_id),
            )

    def rate_take(self, key: str, *, limit: int, window_s: float, now: float) -> float:
        start = (now // window_s) * window_s
        with self._tx() as c:
            row = c.execute(
                "INSERT INTO rate_windows (key, window_start, count) VALUES (%s, %s, 1) "
                "ON CONFLICT (key) DO UPDATE SET count = CASE WHEN "
                "rate_windows.window_start = EXCLUDED.window_start THEN rate_windows.count + 1 "
                "ELSE 1 END, window_start = EXCLUDED.window_start RETURNING count",
                (key, start),
            ).fetchone()
        assert row is not None
        return 0.0 if int(row[0]) <= limit else max(start + window_s - now, 0.001)

    def notice_claim(self, run_id: str, node_id: str, kind: str, target: str) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO notices (run_id, node_id, kind, target, status, attempts, "
                "updated_at) VALUES (%s, %s, %s, %s, 'sending', 0, %s) ON CONFLICT DO NOTHING",
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
        with self._tx() as c:
            c.execute(
                "UPDATE notices SET status = %s, attempts = %s, error = %s, updated_at = %s "
                "WHERE run_id = %s AND node_id = %s AND kind = %s AND target = %s",
                (status, attempts, error, time.time(), run_id, node_id, kind, target),
            )

    def notices(self, run_id: str) -> list[dict[str, Any]]:
        with self._read("notices") as c, c.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT run_id, node_id, kind, target, status, attempts, error, updated_at "
                "FROM notices WHERE run_id = %s ORDER BY updated_at, node_id, kind, target",
                (run_id,),
            ).fetchall()
        return [{**r, "attempts": int(r["attempts"])} for r in rows]

    # -- readiness and autonomy (runner/runs/readiness.py, runner/engine/autonomy.py) -------
    def eval_record(
        self, workflow: str, *, spec_digest: str | None, passed: bool, summary: dict[str, Any]
    ) -> int:
        with self._tx() as c:
            row = c.execute(
                "INSERT INTO eval_results (workflow, spec_digest, created_at, passed, summary) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (workflow, spec_digest, time.time(), int(passed), dumps(summary)),
            ).fetchone()
        return int(row[0]) if row else 0

    def eval_results(self, workflow: str, *, limit: int = 10) -> list[dict[str, Any]]:
        with self._read("eval_results") as c:
            rows = c.execute(
                "SELECT id, workflow, spec_digest, created_at, passed, summary FROM eval_results "
                "WHERE workflow = %s ORDER BY id DESC LIMIT %s",
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
        sql = "SELECT run_id FROM runs WHERE workflow = %s"
        args: list[Any] = [workflow]
        if tenant is not None:
            sql += " AND tenant = %s"
            args.append(tenant)
        if since is not None:
            sql += " AND created_at >= %s"
            args.append(since)
        return sql, args

    def window_runs(
        self, workflow: str, *, tenant: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        sub, args = self._window(workflow, tenant, since)
        with self._read("runs") as c:
            rows = c.execute(
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
        with self._read("approvals") as c:
            rows = c.execute(
                "SELECT run_id, node_id, status, requested_at, decided_at, timeout_at "
                f"FROM approvals WHERE run_id IN ({sub}) ORDER BY requested_at",
                args,
            ).fetchall()
        names = ("run_id", "node_id", "status", "requested_at", "decided_at", "timeout_at")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def window_writes(
        self, workflow: str, *, tenant: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        sub, args = self._window(workflow, tenant, since)
        with self._read("ledger") as c:
            rows = c.execute(
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
        with self._read("events") as c:
            rows = c.execute(
                "SELECT id, run_id, ts, type, node_id, data FROM events "
                f"WHERE type = ANY(%s) AND run_id IN ({sub}) ORDER BY id",
                [list(types), *args],
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
        with self._read("calls") as c:
            rows = c.execute(
                "SELECT run_id, node_id, name, data, error, trace_id FROM calls "
                f"WHERE kind = %s AND run_id IN ({sub}) ORDER BY id",
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
        with self._read("ledger") as c:
            w = c.execute(
                "SELECT COUNT(*), COALESCE(SUM(undone), 0) FROM ledger WHERE effect = 'write' "
                f"AND status = 'done' AND tool = %s AND run_id IN ({sub})",
                [tool, *args],
            ).fetchone()
        with self._read("events") as c:
            d = c.execute(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE data::jsonb ->> 'effect' = 'deny') "
                "FROM events WHERE type = 'policy_decision' AND data::jsonb ->> 'tool' = %s "
                f"AND data::jsonb ->> 'workflow' IS NULL AND run_id IN ({sub})",
                [tool, *args],
            ).fetchone()
        writes, undone = w or (0, 0)
        decisions, denied = d or (0, 0)
        return int(writes), int(undone), int(decisions), int(denied)

    _AUTONOMY_COLS = ("workflow", "tool", "tenant", "level", "changed_by", "changed_at", "reason")

    def autonomy_rows(self, workflow: str | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(self._AUTONOMY_COLS)} FROM autonomy"
        args: list[Any] = []
        if workflow is not None:
            sql += " WHERE workflow = %s"
            args.append(workflow)
        with self._read("autonomy") as c:
            rows = c.execute(sql + " ORDER BY workflow, tool, tenant", args).fetchall()
        return [_unseal_reason(dict(zip(self._AUTONOMY_COLS, r, strict=True))) for r in rows]

    def autonomy_level(self, workflow: str, tool: str, tenant: str | None) -> dict[str, Any] | None:
        with self._read("autonomy") as c:
            row = c.execute(
                f"SELECT {', '.join(self._AUTONOMY_COLS)} FROM autonomy "
                "WHERE workflow = %s AND tool = %s AND tenant IN (%s, '') "
                "ORDER BY tenant = '' LIMIT 1",
                (workflow, tool, tenant or ""),
            ).fetchone()
        return _unseal_reason(dict(zip(self._AUTONOMY_COLS, row, strict=True))) if row else None

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
        with self._tx() as c:
            # the row (or the key's absence) is locked for this transaction: racing demotions
            # see one another's outcome
            c.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{workflow}/{tool}/{tenant or ''}",)
            )
            row = c.execute(
                "SELECT level FROM autonomy WHERE workflow = %s AND tool = %s AND tenant = %s",
                (workflow, tool, tenant or ""),
            ).fetchone()
            was = row[0] if row else ""
            if only_if is not None and was != only_if:
                return False
            c.execute(
                "INSERT INTO autonomy (workflow, tool, tenant, level, changed_by, changed_at, "
                "reason) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (workflow, tool, tenant) "
                "DO UPDATE SET level = EXCLUDED.level, changed_by = EXCLUDED.changed_by, "
                "changed_at = EXCLUDED.changed_at, reason = EXCLUDED.reason",
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
        with self._tx() as c:
            row = c.execute(
                "INSERT INTO budgets (body, text, source, set_by, set_at) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (json.dumps(body, sort_keys=True), text, source, by, time.time()),
            ).fetchone()
            return int(row[0]) if row else 0

    def budgets_get(self) -> dict[str, Any] | None:
        with self._conn() as c:
            row = c.execute(
                "SELECT id, body, text, source, set_by, set_at FROM budgets "
                "ORDER BY id DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        keys = ("version", "body", "text", "source", "set_by", "set_at")
        out = dict(zip(keys, row, strict=True))
        out["body"] = json.loads(out["body"])
        return out

    def spend_totals(self, bound: dict[str, str], since: float) -> dict[str, float]:
        with self._read("spend") as c:
            return limits.totals(_q(c), bound, since)

    def spend_values(self, key: str, since: float) -> list[str]:
        with self._read("spend") as c:
            return limits.values(_q(c), key, since, tools=key == "tool")

    def rate_acquire(self, key: str, *, amount: int, limit: int, per: float) -> float:
        with self._tx() as c:
            return limits.rate_acquire(_q(c), _lock(c), key, amount=amount, limit=limit, per=per)

    def cache_get(self, key: str) -> dict[str, Any] | None:
        with self._read("response_cache") as c:
            row = c.execute(
                "UPDATE response_cache SET hits = hits + 1, last_hit_at = %s WHERE key = %s "
                "RETURNING tenant, model, response, created_at, hits",
                (time.time(), key),
            ).fetchone()
        if row is None:
            return None
        tenant, model, response, created_at, hits = row
        return {
            "tenant": tenant,
            "model": model,
            "response": loads(response),
            "created_at": created_at,
            "hits": int(hits),
        }

    def cache_put(self, key: str, *, tenant: str | None, model: str, response: Any) -> None:
        self._defer(
            "response_cache",
            "INSERT INTO response_cache (key, tenant, model, response, created_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
            "response = excluded.response, model = excluded.model, "
            "created_at = excluded.created_at, hits = 0",
            (key, tenant, model, dumps(response), time.time()),
        )

    def cache_stats(self, tenant: str | None = None) -> dict[str, int]:
        sql = "SELECT COUNT(*), COALESCE(SUM(hits), 0) FROM response_cache"
        args: tuple[Any, ...] = ()
        if tenant is not None:
            sql += " WHERE tenant = %s"
            args = (tenant,)
        with self._read("response_cache") as c:
            row = c.execute(sql, args).fetchone()
        n, hits = row if row else (0, 0)
        return {"entries": int(n), "hits": int(hits)}


def _q(conn: psycopg.Connection[Any]) -> limits.Query:
    """runner/store/limits.py's statements (`?` placeholders), run on this connection."""

    def run(sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        cur = conn.execute(sql.replace("?", "%s"), args)
        return list(cur.fetchall()) if cur.description is not None else []

    return run


def _lock(conn: psycopg.Connection[Any]) -> limits.Lock:
    """A transaction-scoped advisory lock on a key (a ceiling, a rate-limit key)."""

    def take(key: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))

    return take


_OPEN: weakref.WeakSet[PostgresStore] = weakref.WeakSet()


@atexit.register
def _flush_open_stores() -> None:
    """Rows still queued when the process exits normally commit (before the pools close)."""
    for store in list(_OPEN):
        with suppress(Exception):
            store.flush()


def _write_queued(
    conn: psycopg.Connection[Any], pending: list[tuple[str, tuple[Any, ...]]]
) -> None:
    """Queued rows in the order they were queued; runs of one statement as one executemany."""
    with conn.cursor() as cur:
        start = 0
        while start < len(pending):
            sql = pending[start][0]
            end = start + 1
            while end < len(pending) and pending[end][0] == sql:
                end += 1
            if end - start == 1:
                cur.execute(sql, pending[start][1])
            else:
                cur.executemany(sql, [p for _, p in pending[start:end]])
            start = end


def _version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT value FROM flowrun_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def _cause(e: psycopg.Error) -> str:
    """libpq's reason, without what the message already says (host, port) or its severity:
    'connection to server at "h", port 5432 failed: FATAL:  password authentication failed'."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    first = lines[0].rpartition(" failed: ")[2] or lines[0]
    for severity in ("FATAL:", "ERROR:"):
        first = first.removeprefix(severity).strip()
    return first


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _run_row(row: tuple[Any, ...]) -> RunRow:
    d = dict(zip(RunRow.__dataclass_fields__, row, strict=True))
    d["inputs"] = loads(d["inputs"])
    d["outputs"] = loads(d["outputs"])
    d["options"] = loads(d["options"])
    d["reason"] = unseal_text(d["reason"])
    d["kill_requested"] = bool(d["kill_requested"])
    return RunRow(**d)


def _ledger_row(d: dict[str, Any]) -> dict[str, Any]:
    d["args"] = loads(d["args"])
    d["result"] = loads(d["result"])
    d["error"] = unseal_text(d["error"])
    return d


def _approval_row(d: dict[str, Any]) -> dict[str, Any]:
    for k in ("assignees", "decision_schema", "decision"):
        d[k] = loads(d[k])
    d["summary"], d["reason"] = unseal_text(d["summary"]), unseal_text(d["reason"])
    return d


def _identity_row(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    for k in ("roles", "tenants", "scopes"):
        d[k] = loads(d[k]) or []
    d["live"] = bool(d["live"])
    return d


def _batch_row(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    d["options"] = loads(d["options"])
    for k in ("total", "pid"):
        if d.get(k) is not None:
            d[k] = int(d[k])
    return d


def _unseal_reason(d: dict[str, Any]) -> dict[str, Any]:
    d["reason"] = unseal_text(d["reason"])  # sealed as written: a reason may quote a value
    return d
