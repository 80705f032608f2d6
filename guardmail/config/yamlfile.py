"""A YAML file read for configuration: its data, where each key and value sits, and validation.

Contracts:
- Only ``yaml.SafeLoader`` parses: tags that would build Python objects are a syntax issue.
- Whatever a file holds, reading it gives a Source or a ConfigError placed in it, never another
  exception: files over ``MAX_BYTES`` are refused unread, lists and mappings nested deeper than
  ``MAX_DEPTH`` are refused where they go too deep (PyYAML composes recursively: 500 nested
  ``[`` used to raise RecursionError), and a scalar PyYAML cannot build (an int of more than
  4300 digits, 2026-13-45) is an issue at that scalar.
- The text is composed once into a node tree and the data constructed from that same tree, so
  positions and data cannot disagree.
- ``parse_source`` raises ConfigError (path ``(yaml)``) for text that is not one YAML document.
  A key repeated in a mapping, which PyYAML would silently resolve to the last value, does not
  stop parsing: it is returned in ``Source.issues`` so that validation can still report the rest.
- ``validate(model, source)`` turns every pydantic error into an issue at its key (unknown keys)
  or value (everything else), with pydantic's "Value error, " prefix dropped and the bad value
  shown; it returns the model or None, never raises.
- ``Source.position(loc)`` walks the node tree by a pydantic ``loc`` tuple (mapping keys, list
  indexes) and, when the path leaves the document (a missing key), falls back to the nearest
  node that exists: every issue gets a place. Lines and columns are 1-based.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from guardmail.errors import ConfigError, ConfigIssue

MAX_BYTES = 8 * 1024 * 1024  # a config of 10,000 offenders is about 3 MiB
MAX_DEPTH = 64  # guardmail's own files nest 5 deep; anchors and merges need no more
MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"
SYNTAX_PATH = "(yaml)"
DOCUMENT_PATH = "(document)"
# Keys whose values may carry a secret (a password command's arguments): issues never quote them.
SECRET_KEYS = frozenset({"password_command", "password_file"})

Loc = Sequence[str | int]
M = TypeVar("M", bound=BaseModel)


def dotted(loc: Loc) -> str:
    """The key path as issues print it: ``offenders.0.patterns.1``. A key that is blank or holds
    characters a terminal would act on (a carriage return would overwrite the line) is shown
    quoted: ``'\\r'``."""
    return ".".join(_key_shown(part) for part in loc) or DOCUMENT_PATH


def _key_shown(part: str | int) -> str:
    text = str(part)
    return text if text.strip() and text.isprintable() else repr(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """One parsed YAML file.

    ``file`` is the name issues print; ``data`` the document as plain Python (None when the file
    is empty); ``root`` its node tree; ``issues`` the repeated keys found while parsing.
    """

    file: str
    data: Any
    root: yaml.Node | None
    issues: tuple[ConfigIssue, ...] = ()

    def find(self, loc: Loc, *, key: bool = False) -> yaml.Node | None:
        """The node at ``loc`` exactly (its key node if ``key``), or None if it is not there."""
        node, depth = self._walk(loc, key=key)
        return node if depth == len(loc) else None

    def count(self, loc: Loc) -> int:
        """How many items the list at ``loc`` has (0 if there is no list there)."""
        node = self.find(loc)
        return len(node.value) if isinstance(node, yaml.SequenceNode) else 0

    def position(self, loc: Loc, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of ``loc``, or of its nearest ancestor present in the file."""
        node, _ = self._walk(loc, key=key)
        if node is None:
            return 1, 1
        return node.start_mark.line + 1, node.start_mark.column + 1

    def issue(self, loc: Loc, message: str, *, key: bool = False) -> ConfigIssue:
        """An issue located at ``loc`` (at the key itself if ``key``, else at its value)."""
        line, column = self.position(loc, key=key)
        return ConfigIssue(
            file=self.file, line=line, column=column, path=dotted(loc), message=message
        )

    def _walk(self, loc: Loc, *, key: bool) -> tuple[yaml.Node | None, int]:
        node = self.root
        for depth, part in enumerate(loc):
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                # The last of repeated keys wins, as in the constructed data.
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                        last = depth == len(loc) - 1
                        child = key_node if key and last else value_node
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if 0 <= part < len(node.value):
                    child = node.value[part]
            if child is None:
                return node, depth
            node = child
        return node, len(loc)


def load_source(path: Path, file: str) -> Source:
    """Read and parse ``path``; OSError and UnicodeDecodeError propagate for the caller to place.

    A file over ``MAX_BYTES`` is a ConfigError, read no further than that.
    """
    with path.open("rb") as stream:
        raw = stream.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        message = (
            f"the file is larger than {MAX_BYTES // 2**20} MiB, more than any configuration "
            "needs; split its offenders across offenders_files"
        )
        raise ConfigError(
            [ConfigIssue(file=file, line=1, column=1, path="(file)", message=message)]
        )
    return parse_source(raw.decode("utf-8"), file)


# PyYAML's composer holds what the bound needs; the type checker sees a whole loader.
if TYPE_CHECKING:
    from yaml import SafeLoader as _Composer
else:
    from yaml.composer import Composer as _Composer


class _Bounded(_Composer):
    """Refuses collections nested deeper than MAX_DEPTH and places values PyYAML cannot
    construct, so that no file raises anything but a YAMLError (a loader's first base)."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # Both classes named: libyaml's check_event matches the exact class, not a base.
        if not self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
            mark = event.start_mark
            raise yaml.composer.ComposerError(
                None,
                None,
                f"lists and mappings nest deeper than {MAX_DEPTH} levels here; "
                "a guardmail configuration needs only a few",
                mark if isinstance(mark, yaml.Mark) else None,
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, ArithmeticError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this {_kind(node)} value ({exc})", node.start_mark
            ) from None


class _BoundedLoader(_Bounded, yaml.SafeLoader):
    """The safe loader, bounded: the reference reader, whose issues every file gets."""


if yaml.__with_libyaml__:
    from yaml.cyaml import CParser  # type: ignore[attr-defined]

    class _FastLoader(_Bounded, CParser, SafeConstructor, Resolver):
        """The same, with libyaml's scanner and parser (C) under PyYAML's own composer
        (bounded depth, no recursion in C) and safe constructor: ~5x faster on a tenant file."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)


def _kind(node: yaml.Node) -> str:
    return str(node.tag).rsplit(":", 1)[-1]


def _fast_source(text: str, file: str) -> Source | None:
    """``parse_source`` through ``_FastLoader`` (an ISP's daemon reads 1,000 tenant files at
    start), or None if that fails in any way: the reference reader then reads the text again
    and places the issue exactly as it always has."""
    if not yaml.__with_libyaml__:
        return None
    loader = None
    try:
        loader = _FastLoader(text)
        root = loader.get_single_node()
        repeated = tuple(_repeated_keys(root, file)) if root is not None else ()
        data = loader.construct_document(root) if root is not None else None
    except Exception:  # a file the reference reader refuses (or libyaml reads differently)
        return None
    finally:
        if loader is not None:
            loader.dispose()
    return Source(file=file, data=data, root=root, issues=repeated)


def parse_source(text: str, file: str) -> Source:
    """Parse ``text`` (one YAML document) with the safe loader; see the module contracts."""
    fast = _fast_source(text, file)
    if fast is not None:
        return fast
    loader: yaml.SafeLoader | None = None
    try:
        loader = _BoundedLoader(text)
        root = loader.get_single_node()
        repeated = tuple(_repeated_keys(root, file)) if root is not None else ()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_syntax_issue(exc, file)]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = f"character {exc.character!r} is not allowed in YAML ({exc.reason})"
        raise ConfigError([_at(file, line, column, message)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([_at(file, 1, 1, str(exc))]) from None
    except RecursionError:  # not expected past MAX_DEPTH; a file must never crash the reader
        message = "the YAML is nested too deeply to read"
        raise ConfigError([_at(file, 1, 1, message)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return Source(file=file, data=data, root=root, issues=repeated)


def validate(model: type[M], source: Source) -> tuple[M | None, list[ConfigIssue]]:
    """``model`` from ``source`` (or None), and every issue: repeated keys, then pydantic's."""
    issues = list(source.issues)
    if not isinstance(source.data, dict):
        keys = ", ".join(repr(k) for k in model.model_fields)
        found = "the file is empty" if source.data is None else f"found {_shown(source.data)}"
        issues.append(source.issue((), f"expected a mapping with keys such as {keys}; {found}"))
        return None, issues
    try:
        return model.model_validate(source.data), issues
    except ValidationError as exc:
        issues.extend(_issue(model, source, error) for error in exc.errors())
        return None, issues


def _issue(model: type[BaseModel], source: Source, error: ErrorDetails) -> ConfigIssue:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return source.issue(loc, _unknown_key(model, loc), key=True)
    if kind == "missing":
        return source.issue(loc, f"required key {loc[-1]!r} is missing")
    if kind == "path_type":
        message = "should be a path (a string)"
    else:
        message = error["msg"].removeprefix("Value error, ").replace("Input should", "should", 1)
    if kind not in {"value_error", "assertion_error"}:
        secret = any(part in SECRET_KEYS for part in loc)
        message += f" (got {_kind_of(error['input']) if secret else _shown(error['input'])})"
    return source.issue(loc, message, key=kind == "invalid_key")


def _unknown_key(model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    message = f"unknown key {loc[-1]!r}"
    owner = _model_at(model, loc[:-1])
    if owner is None:
        return message
    allowed = list(owner.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    return f"{message}; expected one of: {', '.join(allowed)}"


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class validating the mapping at ``loc``, for naming its allowed keys."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        elif get_origin(current) is list and isinstance(part, int):
            current = get_args(current)[0]
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _kind_of(value: object) -> str:
    """A bad value named by its kind only: under a secret's key it may carry the secret."""
    if value is None:
        return "an empty value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else "a value"


def _shown(value: object) -> str:
    """A bad value as an issue quotes it: short, and by kind for lists and mappings."""
    if value is None or isinstance(value, dict | list):
        return _kind_of(value)
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _at(file: str, line: int, column: int, message: str) -> ConfigIssue:
    return ConfigIssue(file=file, line=line, column=column, path=SYNTAX_PATH, message=message)


def _syntax_issue(exc: yaml.MarkedYAMLError, file: str) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    message = exc.problem or exc.context or "invalid YAML"
    if exc.problem and exc.context:
        where = exc.context_mark
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        message += f" ({exc.context}{at})"
    return _at(file, line, column, message)


def _repeated_keys(root: yaml.Node, file: str) -> Iterator[ConfigIssue]:
    """Issues for keys given twice in one mapping; ``<<`` merges may override, so are skipped."""
    seen_nodes: set[int] = set()  # anchors can make the tree a graph, even a cyclic one
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, (*loc, i)) for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == MERGE_TAG:
                    continue
                name = key_node.value
                stack.append((value_node, (*loc, name)))
                earlier = first.setdefault((key_node.tag, name), key_node)
                if earlier is not key_node:
                    mark = key_node.start_mark
                    yield ConfigIssue(
                        file=file,
                        line=mark.line + 1,
                        column=mark.column + 1,
                        path=dotted((*loc, name)),
                        message=f"key {name!r} is repeated (first at line "
                        f"{earlier.start_mark.line + 1}); YAML would silently keep only the last",
                    )
