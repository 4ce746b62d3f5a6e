"""Sealing at rest: every secret or personal value a store writes is encrypted in place.

The store serialises every value through one point (dumps/loads). There, each finding of the
detectors (runner/redact.py: key formats, key-like env values, values under key-like fields,
high-entropy tokens, emails, cards, phones, a spec's own patterns) becomes an inline token
`[SEALED:<kind>:<Fernet token>]` (AES-128-CBC + HMAC-SHA256, authenticated), so no such value
is in clear in the database file, its WAL, or a backup of them. Reading unseals: the engine
gets the real value back (a resumed refund goes to the real email), while every display path
redacts, and a token read raw by anything else shows as `[REDACTED:<kind>]`.

The key: FLOWRUN_SEAL_KEY (a Fernet key, `Sealer.new_key()`) when set, else a key file created
0600 beside the store. A key file beside the data protects against a leaked database file or
backup, not against someone who can read the store's folder; docs/security.md says more.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import ExitCode, FlowrunError
from runner.redact import BUILTIN_KINDS, SEALED, remember, rewriter

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

KEY_ENV = "FLOWRUN_SEAL_KEY"
KEY_FILE = "seal.key"


class SealError(FlowrunError):
    """A sealed value cannot be opened: the key is not the one it was sealed with."""

    exit_code = ExitCode.INVALID


def private_dir(path: Path) -> None:
    """Create a folder flowrun owns as 0700, and so every missing folder above it (mkdir's
    `parents` get the default mode: a store at new/a/flowrun.db left new/ and a/ 0755); a folder
    that exists is left as it is."""
    missing = []
    while not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=0o700)


def private_file(path: Path) -> None:
    """Make sure `path` exists and is 0600 (readable by its owner only).

    An existing file is never opened here: closing any descriptor of a file drops every POSIX
    lock this process holds on it, SQLite's included, so a store opened while another store of
    the same file is in use in this process (a batch opens one per line) would lose its locks
    and see "disk I/O error"."""
    try:
        if os.stat(path).st_mode & 0o777 != 0o600:
            os.chmod(path, 0o600)
        return
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _new_key() -> bytes:
    """A Fernet key, as Fernet.generate_key() makes it (32 random bytes, url-safe base64)."""
    import base64

    return base64.urlsafe_b64encode(os.urandom(32))


def _check_key(key: bytes | str) -> None:
    """Fernet's own check of a key (32 url-safe base64 bytes), without importing cryptography."""
    import base64
    import binascii

    try:
        raw = base64.urlsafe_b64decode(key)
    except (binascii.Error, ValueError, TypeError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.")


def _key_file(folder: Path) -> bytes:
    """The key in `folder`/seal.key, created (atomically, 0600) by the first process to ask."""
    path = folder / KEY_FILE
    if not path.exists():
        private_dir(folder)
        tmp = folder / f".{KEY_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, _new_key() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip()


class Sealer:
    """Seals findings in values about to be stored, and opens them in stored text."""

    def __init__(self, key: bytes | str, *, old: tuple[bytes | str, ...] = ()) -> None:
        try:
            for k in (key, *old):
                _check_key(k)
        except (ValueError, TypeError) as e:
            raise SealError(
                f"not a seal key: {e}", hint=f"{KEY_ENV} must be a key from Sealer.new_key()"
            ) from None
        self._keys = (key, *old)
        self._walk = rewriter(self._seal_span)

    @functools.cached_property
    def _fernet(self) -> MultiFernet:
        """perf (issue 26): cryptography loads (~30 ms) when a value is first sealed or opened,
        not with every store: most commands (runs, show of clean runs, a run of tool nodes
        with nothing secret) never need it."""
        from cryptography.fernet import Fernet, MultiFernet

        return MultiFernet([Fernet(k) for k in self._keys])

    @staticmethod
    def new_key() -> str:
        return _new_key().decode()

    @classmethod
    def for_folder(cls, folder: Path) -> Sealer:
        """FLOWRUN_SEAL_KEY if set, else the key file in the store's folder (made if missing)."""
        env = os.environ.get(KEY_ENV)
        return cls(env.strip()) if env else cls(_key_file(folder))

    def _seal_span(self, kind: str, text: str) -> str:
        if kind.startswith("\0"):  # already sealed (a value read raw and written back)
            return text
        token = self._fernet.encrypt(text.encode()).decode()
        return f"[SEALED:{kind}:{token}]"

    def seal(self, value: Any) -> Any:
        """A copy of a JSON value with every finding sealed (the value itself is unchanged)."""
        return self._walk(value, True)

    def seal_encoded(self, value: Any, encode: Callable[[Any], str]) -> str:
        """`encode(self.seal(value))`, with one encoding when there is nothing to seal."""
        return self._walk.encoded(value, True, encode)

    def _open(self, token: str, kind: str = "secret") -> str:
        from cryptography.fernet import InvalidToken

        try:
            value = self._fernet.decrypt(token.encode()).decode()
            if kind not in BUILTIN_KINDS:
                remember(kind, value)
            return value
        except InvalidToken:
            raise SealError(
                "a sealed value in the store cannot be opened with this key",
                hint=f"set {KEY_ENV} (or restore {KEY_FILE} beside the store) to the key the "
                "store was written with",
            ) from None

    def unseal_json(self, text: str) -> str:
        """JSON text with every sealed token replaced by its value, escaped for a JSON string."""
        if "[SEALED:" not in text:
            return text
        return SEALED.sub(lambda m: json.dumps(self._open(m.group(2), m.group(1)))[1:-1], text)

    def reseal(self, text: str) -> str:
        """Stored text with every sealed token sealed again under this sealer's key (opened
        with any key this process knows): a copy of a store for another key."""
        if "[SEALED:" not in text:
            return text

        from cryptography.fernet import InvalidToken

        def again(m: Any) -> str:
            try:
                token = self._fernet.rotate(m.group(2).encode()).decode()
            except InvalidToken:
                self._open(m.group(2))  # raises the SealError that names the key
                raise
            return f"[SEALED:{m.group(1)}:{token}]"

        return SEALED.sub(again, text)

    def unseal_text(self, text: str) -> str:
        """Plain text (not JSON) with every sealed token replaced by its value."""
        if "[SEALED:" not in text:
            return text
        return SEALED.sub(lambda m: self._open(m.group(2), m.group(1)), text)


# The store's one serialisation point (dumps/loads) is a pair of module functions, called by
# every store method of both databases; so the sealer is per process: the key of the store the
# process opened last seals, and every key it has opened unseals. A process that writes to two
# stores with different keys at once would seal one's rows with the other's key; flowrun's
# commands and servers open one store each (docs/security.md).
_CURRENT: list[Sealer] = []
_KEYS: dict[bytes, None] = {}
_KEYS_LOCK = threading.Lock()


def use_key_beside(folder: Path | None) -> Sealer:
    """Seal with FLOWRUN_SEAL_KEY, else with the key file in `folder` (a database without a
    folder, such as PostgreSQL, uses ~/.flowrun); returns the process's sealer. Thread-safe:
    a server opens stores from several threads at once."""
    env = os.environ.get(KEY_ENV)
    key = env.strip().encode() if env else _key_file(folder or Path.home() / ".flowrun")
    with _KEYS_LOCK:
        if _CURRENT and next(iter(_KEYS), None) == key:  # the newest key is first
            return _CURRENT[0]
        _KEYS.pop(key, None)
        old = tuple(_KEYS)
        _KEYS.clear()
        _KEYS[key] = None
        _KEYS.update(dict.fromkeys(old))
        sealer = Sealer(key, old=old)
        _CURRENT[:] = [sealer]
        return sealer


def seal(value: Any) -> Any:
    """`value` with its findings sealed by the process's sealer (as is when no store is open)."""
    return _CURRENT[0].seal(value) if _CURRENT else value


def seal_encoded(value: Any, encode: Callable[[Any], str]) -> str:
    """`encode(seal(value))`: the text the store writes of a value."""
    return _CURRENT[0].seal_encoded(value, encode) if _CURRENT else encode(value)


def unseal_json(text: str) -> str:
    if "[SEALED:" not in text:
        return text
    if not _CURRENT:
        raise SealError(
            "a sealed value was read before any store's key was loaded",
            hint=f"open the store first, or set {KEY_ENV}",
        )
    return _CURRENT[0].unseal_json(text)


def reseal(value: Any) -> Any:
    """A stored column's value with its sealed tokens sealed again under the current key."""
    if not isinstance(value, str) or "[SEALED:" not in value or not _CURRENT:
        return value
    return _CURRENT[0].reseal(value)


def unseal_text(text: str | None) -> str | None:
    """A plain-text column (a reason, an error, a summary) with its sealed spans opened."""
    if text is None or "[SEALED:" not in text:
        return text
    if not _CURRENT:
        raise SealError("a sealed value was read before any store's key was loaded")
    return _CURRENT[0].unseal_text(text)
