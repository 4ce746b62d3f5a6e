"""YAML → plain data with source positions; duplicate keys and YAML bombs are errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from runner import files
from runner.errors import Diagnostic, SpecError

MAX_SPEC_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 200  # mappings and lists inside each other; deeper would overflow Python's stack
MAX_NODES = 500_000  # YAML nodes after alias expansion; bounds "billion laughs" documents

PathKey = tuple[str | int, ...]


class Pos(NamedTuple):
    """Where a key or value starts (a NamedTuple: a big spec makes one per YAML node, and a
    frozen dataclass costs ~4x as much to build; perf, issue 26)."""

    line: int  # 1-based
    col: int  # 1-based
    style: str | None = None  # YAML scalar style: None plain, "'" '"' "|" ">"
    end_line: int = 0


@dataclass
class Source:
    """A loaded YAML document and where each key and value came from."""

    path: str
    text: str
    data: Any
    keys: dict[PathKey, Pos] = field(default_factory=dict)
    values: dict[PathKey, Pos] = field(default_factory=dict)

    def pos(self, path: PathKey, *, key: bool = False) -> Pos:
        """Position of the value (or key) at path, else of its nearest ancestor."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if not key and p in self.keys:
                return self.keys[p]
            p = p[:-1]
        return self.values.get((), Pos(1, 1))

    # perf (issue 26): a kept plan (runner/plan/cache.py) holds its spec's Source; the
    # positions and the parsed data are most of its bytes and of the time to load it, and a
    # run rarely needs them (a message that points into the spec), so they are pickled as the
    # text alone and parsed again from it when first read.
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "text": self.text}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __getattr__(self, name: str) -> Any:
        if name in ("data", "keys", "values") and "text" in self.__dict__:
            fresh = load_text(self.text, self.path)
            self.data, self.keys, self.values = fresh.data, fresh.keys, fresh.values
            return self.__dict__[name]
        raise AttributeError(name)

    def expr_pos(self, path: PathKey, offset: int) -> tuple[int, int]:
        """Line and column of a character offset inside the string scalar at path."""
        p = self.values.get(tuple(path))
        if p is None:
            q = self.pos(path)
            return q.line, q.col
        value = _get(self.data, path)
        text = value if isinstance(value, str) else ""
        # an error "at the end" points just past the last character, not at a trailing newline
        offset = max(0, min(offset, len(text.rstrip())))
        if p.style in ("|", ">"):
            before = text[:offset]
            line = p.line + 1 + before.count("\n")
            indent = _block_indent(self.text, p.line)
            col = indent + 1 + (len(before) - (before.rfind("\n") + 1))
            return line, col
        return _flow_pos(self.text, p, offset)

    def diag(
        self,
        path: PathKey,
        rule: str,
        message: str,
        *,
        hint: str | None = None,
        key: bool = False,
        offset: int | None = None,
        severity: str = "error",
    ) -> Diagnostic:
        if offset is not None:
            line, col = self.expr_pos(path, offset)
        else:
            p = self.pos(path, key=key)
            line, col = p.line, p.col
        return Diagnostic(
            file=self.path,
            line=line,
            col=col,
            rule=rule,
            message=message,
            hint=hint,
            severity=severity,
        )


def _get(data: Any, path: PathKey) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _flow_pos(text: str, p: Pos, offset: int) -> tuple[int, int]:
    """Walk a plain or quoted scalar's source to the offset-th character of its value.

    Escapes (`\\"`, `''`) take more source characters than value characters, and a scalar
    folded over several lines turns each line break (with the indentation after it) into one
    space, so the column is not simply start + offset.
    """
    lines = text.split("\n")
    line, i = p.line - 1, p.col - 1
    if line >= len(lines):
        return p.line, p.col + offset
    quote = p.style if p.style in ("'", '"') else None
    if quote:
        i += 1
    logical = 0
    while logical < offset and line < len(lines):
        src = lines[line]
        if i >= len(src) or not src[i:].strip():
            # a line break: the value has one space (or a newline per blank line) here
            line += 1
            blank = 0
            while line < len(lines) and not lines[line].strip():
                line += 1
                blank += 1
            if line >= len(lines):
                break
            nxt = lines[line]
            i = len(nxt) - len(nxt.lstrip(" \t"))
            logical += blank or 1
            continue
        ch = src[i]
        if quote == '"' and ch == "\\" and i + 1 < len(src):
            i += {"x": 4, "u": 6, "U": 10}.get(src[i + 1], 2)
        elif quote == "'" and ch == "'" and src[i + 1 : i + 2] == "'":
            i += 2
        else:
            i += 1
        logical += 1
    return line + 1, i + 1


def _block_indent(text: str, header_line: int) -> int:
    lines = text.splitlines()
    if header_line < len(lines):
        body = lines[header_line]
        return len(body) - len(body.lstrip(" "))
    return 0


# libyaml's C parser is ~8x faster than the pure-Python one and keeps the same marks
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    pass


_STR = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class Document:
    """What a YAML file read here is, as its messages name it (a spec, a budgets file, ...)."""

    name: str  # "spec", "budgets file"
    keys: str  # the keys a mapping of this kind holds, for "must be a mapping of keys (...)"
    start: str | None = None  # where to start from, for an empty file

    @property
    def article(self) -> str:
        return "an" if self.name[:1] in "aeiou" else "a"


SPEC = Document(
    "spec",
    "apiVersion, kind, nodes, ...",
    "start from specs/support_refund.yaml (apiVersion, kind, metadata, nodes)",
)


def load_file(
    path: str | Path,
    *,
    display: str | None = None,
    mapping: bool = True,
    what: Document = SPEC,
) -> Source:
    """Read and parse a spec (or another YAML file flowrun reads, named by `what`); every
    failure is a SpecError with a position."""
    shown = display or str(path)
    p = Path(path)

    def fail(rule: str, message: str, hint: str | None = None) -> SpecError:
        return SpecError(
            [Diagnostic(file=shown, line=1, col=1, rule=rule, message=message, hint=hint)]
        )

    if not p.exists():
        raise fail("file-not-found", f"no such file {str(path)!r}")
    if p.is_dir():
        noun = f"{what.name} file" if what is SPEC else what.name
        raise fail("file-not-found", f"{str(path)!r} is a directory, not a {noun}")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise fail("file-unreadable", f"cannot read {str(path)!r}: {e.strerror}") from None
    if size > MAX_SPEC_BYTES:
        raise fail(
            "spec-too-large",
            f"{what.name} is {size / 1024 / 1024:.1f} MiB;"
            f" the limit is {MAX_SPEC_BYTES // 1024 // 1024} MiB",
            "split the workflow into smaller specs" if what is SPEC else None,
        )
    try:
        raw = files.read_bytes(p, limit=MAX_SPEC_BYTES)
    except files.UnreadableFile as e:
        raise fail("file-unreadable", f"cannot read {str(path)!r}: {e.strerror}") from None
    except OSError as e:
        raise fail("file-unreadable", f"cannot read {str(path)!r}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail("not-utf8", f"{what.name} is not UTF-8 text (byte {e.start})") from None
    return load_text(text, shown, mapping=mapping, what=what)


def load_text(
    text: str, path: str = "<string>", *, mapping: bool = True, what: Document = SPEC
) -> Source:
    """Parse YAML with positions; `mapping=False` also accepts a list (case files, not specs)."""
    if len(text.encode("utf-8", errors="replace")) > MAX_SPEC_BYTES:
        raise SpecError(
            [
                Diagnostic(
                    file=path,
                    line=1,
                    col=1,
                    rule="spec-too-large",
                    message=f"{what.name} is larger than {MAX_SPEC_BYTES // 1024 // 1024} MiB",
                )
            ]
        )
    if "\x00" in text:
        raise SpecError(
            [
                Diagnostic(
                    file=path,
                    line=1,
                    col=1,
                    rule="yaml-syntax",
                    message=f"{what.name} contains NUL bytes",
                )
            ]
        )
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        msg = e.problem or "invalid YAML"
        if e.context:
            opened = e.context_mark
            where = ""
            if opened is not None and (opened.line, opened.column) != (line - 1, col - 1):
                where = f" (started at line:{opened.line + 1},col:{opened.column + 1})"
            msg = f"{e.context}{where}: {msg}"
        raise SpecError(
            [Diagnostic(file=path, line=line, col=col, rule="yaml-syntax", message=msg)]
        ) from None
    except yaml.YAMLError as e:
        raise SpecError(
            [Diagnostic(file=path, line=1, col=1, rule="yaml-syntax", message=str(e))]
        ) from None
    finally:
        loader.dispose()
    if node is None:
        raise SpecError(
            [
                Diagnostic(
                    file=path,
                    line=1,
                    col=1,
                    rule="empty-spec",
                    message=f"{what.name} is empty",
                    hint=what.start,
                )
            ]
        )
    try:
        size = _expanded_size(node, {})
    except _TooDeep as e:
        raise SpecError(
            [
                Diagnostic(
                    file=path,
                    line=e.node.start_mark.line + 1,
                    col=e.node.start_mark.column + 1,
                    rule="spec-too-large",
                    message=f"{what.name} nests deeper than {MAX_DEPTH} levels",
                )
            ]
        ) from None
    if size > MAX_NODES:
        raise SpecError(
            [
                Diagnostic(
                    file=path,
                    line=1,
                    col=1,
                    rule="spec-too-large",
                    message=f"{what.name} expands to more than {MAX_NODES} YAML nodes (aliases?)",
                    hint="repeat fewer anchors (*alias) inside each other",
                )
            ]
        )
    src = Source(path=path, text=text, data=None)
    conv = _Converter(src, loader)
    data = conv.convert(node, ())
    if conv.diagnostics:
        raise SpecError(conv.diagnostics)
    if mapping and not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise SpecError(
            [
                Diagnostic(
                    file=path,
                    line=node.start_mark.line + 1,
                    col=node.start_mark.column + 1,
                    rule="not-a-mapping",
                    message=f"{what.article} {what.name} must be a mapping of keys ({what.keys}),"
                    f" not {kind}",
                )
            ]
        )
    src.data = data
    return src


class _TooDeep(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def _expanded_size(node: yaml.Node, memo: dict[int, int], depth: int = 0) -> int:
    """YAML nodes after alias expansion, each distinct node visited once (a bomb costs µs)."""
    if depth > MAX_DEPTH:
        raise _TooDeep(node)
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once instead of looping
    size = 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo, depth + 1) + _expanded_size(v, memo, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            size += _expanded_size(item, memo, depth + 1)
    memo[key] = min(size, MAX_NODES + 1)
    return memo[key]


class _Converter:
    def __init__(self, src: Source, loader: yaml.SafeLoader) -> None:
        self.src = src
        self.loader = loader
        self.count = 0
        self.diagnostics: list[Diagnostic] = []
        self.active: set[int] = set()  # collections being converted (an alias back is a cycle)

    def _mark(self, node: yaml.Node) -> Pos:
        style = getattr(node, "style", None)
        return Pos(
            node.start_mark.line + 1, node.start_mark.column + 1, style, node.end_mark.line + 1
        )

    def convert(self, node: yaml.Node, path: PathKey) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            if not self.diagnostics or self.diagnostics[-1].rule != "spec-too-large":
                self.diagnostics.append(
                    Diagnostic(
                        file=self.src.path,
                        line=node.start_mark.line + 1,
                        col=node.start_mark.column + 1,
                        rule="spec-too-large",
                        message=f"spec expands to more than {MAX_NODES} YAML nodes (aliases?)",
                    )
                )
            return None
        self.src.values.setdefault(path, self._mark(node))
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in self.active:
                self._err(
                    node,
                    "yaml-alias-cycle",
                    "an alias refers to a collection that contains it",
                    hint="a YAML anchor (&name) cannot be used (*name) inside its own value",
                )
                return None
            self.active.add(id(node))
            try:
                return self._collection(node, path)
            finally:
                self.active.discard(id(node))
        if node.tag == _STR:  # what construct_object gives a str scalar, without its machinery
            return node.value
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        """A tagged or plain scalar; a value its tag cannot take (`!!int abc`) is a diagnostic."""
        try:
            return self.loader.construct_object(node)
        except yaml.YAMLError as e:
            self._err(node, "yaml-syntax", str(getattr(e, "problem", None) or e))
        except (ValueError, TypeError, OverflowError) as e:
            tag = node.tag.rsplit(":", 1)[-1]
            self._err(node, "yaml-syntax", f"invalid !!{tag} value {node.value!r}: {e}")
        return None

    def _collection(self, node: yaml.MappingNode | yaml.SequenceNode, path: PathKey) -> Any:
        if isinstance(node, yaml.MappingNode):
            try:
                self.loader.flatten_mapping(node)
            except yaml.MarkedYAMLError as e:
                mark = e.problem_mark or e.context_mark
                self.diagnostics.append(
                    Diagnostic(
                        file=self.src.path,
                        line=(mark.line + 1) if mark else node.start_mark.line + 1,
                        col=(mark.column + 1) if mark else node.start_mark.column + 1,
                        rule="yaml-syntax",
                        message=f"merge key (<<): {e.problem or 'invalid merge'}",
                        hint="`<<: *anchor` merges a mapping (or a list of mappings) only",
                    )
                )
                return None
            out: dict[str, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    self._err(knode, "invalid-key", "mapping keys must be plain strings")
                    continue
                key = knode.value if knode.tag == _STR else self._scalar(knode)
                if not isinstance(key, str):
                    key = str(knode.value)
                kpath = (*path, key)
                if key in out:
                    prev = self.src.keys[kpath]
                    self._err(
                        knode,
                        "duplicate-key",
                        f"key {key!r} is duplicated; previously defined at "
                        f"line:{prev.line},col:{prev.col}",
                        hint="remove one of them; YAML would silently keep the last",
                    )
                    continue
                self.src.keys[kpath] = self._mark(knode)
                out[key] = self.convert(vnode, kpath)
            return out
        return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]

    def _err(self, node: yaml.Node, rule: str, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(
            Diagnostic(
                file=self.src.path,
                line=node.start_mark.line + 1,
                col=node.start_mark.column + 1,
                rule=rule,
                message=message,
                hint=hint,
            )
        )
