"""The transcript vault: a run's full transcript, unredacted, encrypted at rest.

Next to the redacted `transcripts/<run>.jsonl`, the vault file `transcripts/<run>.vault` holds
the same lines with their content as it was (prompts, answers, tool arguments and results,
secrets and personal data included). Each line is sealed on its own with AES-256-GCM
(authenticated: a changed or moved line fails to open), under the key named by its key id;
the run id is the associated data, so a line copied into another run's vault does not open.

    {"v": 1, "kid": "2026-01", "n": "<nonce, base64>", "c": "<ciphertext+tag, base64>"}

Opt-in: the vault is written only when a key is configured, in FLOWRUN_VAULT_KEY (`kid:key`,
several comma-separated, the first one writes) or in the file FLOWRUN_VAULT_KEY_FILE names
(one `kid:key` a line, the first one writes; owner-only permissions). The key is never beside
the store: without it, nothing in the vault file is readable. Rotation: put a new key first;
older lines keep opening with the older keys listed after it, and `flowrun vault rekey`
re-encrypts them under the new one. docs/intake.md says more.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import ExitCode, FlowrunError
from runner.store.seal import private_dir

KEY_ENV = "FLOWRUN_VAULT_KEY"
KEY_FILE_ENV = "FLOWRUN_VAULT_KEY_FILE"
KID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
VERSION = 1
SUFFIX = ".vault"


class VaultError(FlowrunError):
    """The vault cannot be used: no key, a bad key, or a line that does not open."""

    exit_code = ExitCode.INVALID


@dataclass(frozen=True)
class VaultKeys:
    """Keys by id; `current` seals new lines."""

    current: str
    keys: dict[str, bytes]
    _ciphers: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @staticmethod
    def new_key(kid: str) -> str:
        """A new `kid:key` line (32 random bytes, url-safe base64)."""
        if not KID.fullmatch(kid):
            raise VaultError(f"key id {kid!r}: use letters, digits, '.', '_', '-' (at most 64)")
        return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}"

    @classmethod
    def parse(cls, entries: list[str], source: str) -> VaultKeys:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for i, entry in enumerate(entries, start=1):
            kid, sep, text = entry.strip().partition(":")
            if not sep or not KID.fullmatch(kid):
                raise VaultError(
                    f"{source}: key {i} is not 'kid:key'",
                    hint="make one with `flowrun vault keygen --kid ID`",
                )
            try:
                raw = base64.urlsafe_b64decode(text.strip().encode())
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise VaultError(
                    f"{source}: key {kid!r} is not 32 bytes of url-safe base64",
                    hint="make one with `flowrun vault keygen --kid ID`",
                )
            if kid in keys:
                raise VaultError(f"{source}: key id {kid!r} appears twice")
            keys[kid] = raw
            order.append(kid)
        if not order:
            raise VaultError(f"{source}: no key")
        return cls(current=order[0], keys=keys)

    def _aead(self, kid: str) -> Any:
        """One AESGCM per key (its set-up is most of the cost of sealing a short line)."""
        aead = self._ciphers.get(kid)
        if aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            aead = self._ciphers[kid] = AESGCM(self.keys[kid])
        return aead

    def seal(self, run_id: str, line: dict[str, Any]) -> bytes:
        """One vault line (JSON + newline) holding `line` encrypted under the current key."""
        nonce = os.urandom(12)
        plain = json.dumps(line, sort_keys=True, default=str, ensure_ascii=False).encode()
        ct = self._aead(self.current).encrypt(nonce, plain, _aad(run_id))
        out = {
            "v": VERSION,
            "kid": self.current,
            "n": base64.b64encode(nonce).decode(),
            "c": base64.b64encode(ct).decode(),
        }
        return (json.dumps(out, sort_keys=True) + "\n").encode()

    def open(self, run_id: str, sealed: dict[str, Any], where: str) -> dict[str, Any]:
        from cryptography.exceptions import InvalidTag

        kid = sealed.get("kid")
        if sealed.get("v") != VERSION or not isinstance(kid, str):
            raise VaultError(f"{where}: not a vault line")
        if kid not in self.keys:
            raise VaultError(
                f"{where}: sealed with key {kid!r}, which is not configured",
                hint=f"add {kid}:<key> after the current key in {KEY_ENV} or {KEY_FILE_ENV}",
            )
        try:
            nonce = base64.b64decode(sealed["n"])
            ct = base64.b64decode(sealed["c"])
            plain = self._aead(kid).decrypt(nonce, ct, _aad(run_id))
        except (InvalidTag, KeyError, ValueError, binascii.Error):
            raise VaultError(
                f"{where}: the line does not open with key {kid!r} (changed, or from another run)"
            ) from None
        value = json.loads(plain)
        if not isinstance(value, dict):
            raise VaultError(f"{where}: not a vault line")
        return value


def _aad(run_id: str) -> bytes:
    return f"flowrun-vault:v{VERSION}:{run_id}".encode()


def configured_keys(env: dict[str, str] | None = None) -> VaultKeys | None:
    """The vault keys of this process, or None when no vault is configured (the default)."""
    e = os.environ if env is None else env
    text = e.get(KEY_ENV)
    if text:
        return VaultKeys.parse([p for p in text.split(",") if p.strip()], KEY_ENV)
    path = e.get(KEY_FILE_ENV)
    if not path:
        return None
    p = Path(path)
    try:
        mode = p.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise VaultError(
                f"{KEY_FILE_ENV}: {path} can be read by others (mode {oct(mode & 0o777)})",
                hint=f"chmod 600 {path}",
            )
        lines = p.read_text().splitlines()
    except OSError as e:
        raise VaultError(f"{KEY_FILE_ENV}: cannot read {path}: {e.strerror}") from None
    return VaultKeys.parse(
        [x for x in lines if x.strip() and not x.lstrip().startswith("#")], str(path)
    )


def require_keys() -> VaultKeys:
    keys = configured_keys()
    if keys is None:
        raise VaultError(
            "reading a full transcript needs the vault key",
            hint=f"set {KEY_ENV} or {KEY_FILE_ENV} (docs/intake.md)",
        )
    return keys


def vault_path(transcript: Path) -> Path:
    """The vault file beside a run's redacted transcript."""
    return transcript.with_suffix(SUFFIX)


class VaultWriter:
    """Appends sealed lines to a run's vault file (0600, opened for append, unbuffered)."""

    def __init__(self, keys: VaultKeys, path: Path, run_id: str) -> None:
        self.keys = keys
        self.run_id = run_id
        private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        self._out: io.FileIO | None = io.FileIO(fd, "a")
        self._pending: list[bytes] = []

    def line(self, line: dict[str, Any]) -> None:
        self._pending.append(self.keys.seal(self.run_id, line))

    def flush(self) -> None:
        if self._out is None or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        view = memoryview(data)
        while view:
            n = self._out.write(view)
            if not n:
                raise OSError("could not write the transcript vault")
            view = view[n:]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._out is not None:
                self._out.close()
                self._out = None


def read_vault(path: Path, run_id: str, keys: VaultKeys) -> Iterator[dict[str, Any]]:
    """The lines of a run's vault, opened (VaultError on a line that does not)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise VaultError(
            f"run {run_id!r} has no full transcript",
            hint="the vault is written only while a vault key is configured",
        ) from None
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            sealed = json.loads(raw)
        except ValueError:
            raise VaultError(f"{path}:{n}: not a vault line") from None
        if not isinstance(sealed, dict):
            raise VaultError(f"{path}:{n}: not a vault line")
        yield keys.open(run_id, sealed, f"{path}:{n}")


def rekey(path: Path, run_id: str, keys: VaultKeys) -> tuple[int, int]:
    """Seal every line of a vault again under the current key (atomically replacing the file):
    (lines, lines that were under another key)."""
    lines = list(read_vault(path, run_id, keys))
    old = 0
    for raw in path.read_text().splitlines():
        if raw.strip() and json.loads(raw).get("kid") != keys.current:
            old += 1
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            for line in lines:
                f.write(keys.seal(run_id, line))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(lines), old
