"""YAML parsing that remembers line numbers, refuses duplicate keys and has a bounded cost.

PyYAML silently lets a repeated key win; an operator who pastes a feed twice deserves an
error instead. Every mapping comes back as a :class:`LineDict` so later validation can say
which line a bad value is on.

Aliases make a few hundred bytes stand for billions of values (the "billion laughs" attack).
PyYAML shares the aliased objects, but everything that later walks the result as a tree (our
validation, the article loader) pays for the expanded size. So the document is judged on its
events and its composed node graph, before any Python object is built: front matter may not use
aliases at all, and config.yaml may use them only while its expanded size stays bounded.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

if TYPE_CHECKING or hasattr(yaml, "CSafeLoader"):
    from yaml._yaml import get_version

    _SafeBase = yaml.CSafeLoader
    # From 0.2.6 on libyaml refuses nesting past 1,000 levels. Older ones (Debian's python3-yaml
    # links 0.2.5) let the C composer recurse until the process dies: 100,000 "[" segfault it.
    _NESTING_CAPPED = get_version() >= (0, 2, 6)
else:  # pragma: no cover - only without libyaml
    _SafeBase = yaml.SafeLoader
    _NESTING_CAPPED = False  # PyYAML's own composer recurses without a cap as well


#: Most values (keys, scalars and collections) a document may hold once every alias is written
#: out. A large config.yaml has a few hundred; the bound only stops alias bombs.
MAX_EXPANDED_NODES = 100_000

#: Most levels of nested lists and mappings, counted after expanding aliases. Real documents
#: use four or five; the bound keeps construction (which recurses per level) off Python's
#: recursion limit, and later walks over the result cheap.
MAX_DEPTH = 100

_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"


class LineDict(dict[Any, Any]):
    """A dict that knows the 1-based line of itself and of each of its keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = 0
        self.key_lines: dict[Any, int] = {}


class YAMLProblem(Exception):
    """The text is not YAML we accept; ``line`` is 1-based within the whole file."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Marked(Protocol):
    line: int  # 0-based, in both PyYAML's and libyaml's marks


class _Loader(_SafeBase):
    """SafeLoader that builds LineDicts and knows which file line its text starts on."""

    def __init__(self, text: str, line_offset: int) -> None:
        super().__init__(text)
        self._line_offset = line_offset

    def file_line(self, mark: _Marked | None) -> int | None:
        # Applied while building, once per node: a shared (aliased) mapping is built once, so
        # its lines are shifted exactly once however often it is referred to.
        return None if mark is None else mark.line + 1 + self._line_offset

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> LineDict:
        # Merge keys (https://yaml.org/type/merge.html) are resolved here rather than by
        # PyYAML's flatten_mapping, which rewrites shared nodes in place and would make a key
        # given explicitly next to ``<<: *defaults`` look like a duplicate. Explicit keys win
        # over merged ones, and of several merged mappings the first to give a key wins.
        result = LineDict()
        result.line = self.file_line(node.start_mark) or 0
        explicit: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for source in self._merge_sources(node, value_node):
                    for merged_key, value in source.items():
                        if merged_key not in result:
                            result[merged_key] = value
                            result.key_lines[merged_key] = source.key_lines.get(merged_key, source.line)
                continue
            line = self.file_line(key_node.start_mark) or 0
            if key_node.tag == _VALUE_TAG:
                key: Any = self.construct_scalar(key_node)
            else:
                key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise YAMLProblem("a key must be a plain value", line) from None
            if key in explicit:
                first = result.key_lines[key]
                raise YAMLProblem(f"duplicate key {key!r} (first given on line {first})", line)
            explicit.add(key)
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = line
        return result

    def _merge_sources(self, node: MappingNode, value_node: Node) -> list[LineDict]:
        candidates = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        sources = []
        for candidate in candidates:
            source = None
            if isinstance(candidate, MappingNode):
                source = self.construct_object(candidate, deep=True)
            if not isinstance(source, LineDict):
                found = getattr(candidate, "id", "something else")
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"expected a mapping or list of mappings for merging, but found {found}",
                    candidate.start_mark,
                )
            sources.append(source)
        return sources


def _construct_map(loader: _Loader, node: MappingNode) -> Any:
    # A generator constructor (PyYAML's default) would hand back the dict before it is
    # filled, so duplicate detection would run too late; build it eagerly.
    return loader.construct_mapping(node, deep=True)


def _construct_timestamp(loader: _Loader, node: ScalarNode) -> Any:
    # "2025-13-45" matches YAML's timestamp pattern but is no date; keep the text so the
    # caller can report it with its line instead of the whole document failing.
    try:
        return loader.construct_yaml_timestamp(node)
    except (ValueError, OverflowError):
        return loader.construct_scalar(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def load_yaml(text: str, first_line: int = 1, *, aliases: bool = True) -> Any:
    """Parse one YAML document safely, in time linear in the text.

    Args:
        text: The document.
        first_line: The file line ``text`` starts on, so reported lines point into the whole
            file (front matter starts on line 2).
        aliases: Whether ``*name`` may refer to an ``&name`` anchor. Front matter has no use
            for them and is written by more hands than config.yaml, so it passes ``False``;
            config.yaml keeps them for ``<<: *defaults``, bounded by :data:`MAX_EXPANDED_NODES`.

    Raises:
        YAMLProblem: Syntax errors, duplicate keys, refused aliases, documents that expand
            past :data:`MAX_EXPANDED_NODES` or nest deeper than :data:`MAX_DEPTH`, and tags
            that would build anything but plain data (``!!python/object`` and the like).
    """
    loader = None
    try:
        loader = _Loader(text, first_line - 1)
        # An alias needs a "*", so most front matter skips this second, event-only parse.
        if (not aliases and "*" in text) or not _NESTING_CAPPED:
            _check_events(text, loader, aliases)
        node = loader.get_single_node()
        if node is None:
            return None
        if aliases or not _small_tree(text):
            _check_graph(node, loader)
        return loader.construct_document(node)
    except YAMLProblem:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + first_line if mark is not None else None
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise YAMLProblem(f"invalid YAML: {message}", line) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise YAMLProblem(f"invalid YAML: {exc}", first_line) from None
    finally:
        if loader is not None:
            loader.dispose()


def _small_tree(text: str) -> bool:
    """True if a document without aliases is surely within the bounds :func:`_check_graph` checks.

    Without aliases the graph is a tree: it holds at most about one value per character, and
    each level of nesting needs an indicator of its own (``[``, ``{``, ``-``, ``:`` or ``?``).
    A front matter of a few lines is then checked by counting characters instead of walking its
    nodes, which a million articles parsed at a cold start notice.
    """
    return 2 * len(text) < MAX_EXPANDED_NODES and sum(map(text.count, "[{-:?")) < MAX_DEPTH


def _check_events(text: str, loader: _Loader, aliases: bool) -> None:
    """Refuse aliases, or nesting a composer could not survive, before any node is built.

    Events come one at a time and hold nothing, so this costs one pass over the text and
    stops at the offending event; it also is the only place that still knows an alias's line.
    """
    depth = 0
    for event in yaml.parse(text, Loader=_SafeBase):
        if isinstance(event, AliasEvent) and not aliases:
            raise YAMLProblem(
                f"aliases (*{event.anchor}) are not allowed in front matter; write the value out",
                loader.file_line(event.start_mark),
            )
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise YAMLProblem(
                    f"nested more than {MAX_DEPTH} levels deep", loader.file_line(event.start_mark)
                )
        elif isinstance(event, CollectionEndEvent):
            depth -= 1


def _check_graph(root: Node, loader: _Loader) -> None:
    """Refuse a node graph whose expanded tree would be too large, too deep or infinite.

    Aliases make the composed graph share nodes; everything after us walks the result as a
    tree. Each distinct collection is visited once and remembers its expanded size and depth,
    so the cost is linear in the text even when the expansion is astronomic. The walk is
    iterative because an alias chain can be far deeper than Python's recursion limit.
    """
    done: dict[int, tuple[int, int]] = {}  # id(collection) -> (expanded nodes, nesting levels)
    open_: set[int] = set()  # collections on the current path: meeting one again is a cycle
    stack: list[tuple[Node, list[Node] | None]] = [(root, None)]  # children given: leaving
    while stack:
        node, children = stack.pop()
        if isinstance(node, ScalarNode):
            continue
        if children is not None:
            open_.discard(id(node))
            size, depth = 1, 1
            for child in children:
                if isinstance(child, ScalarNode):
                    size += 1
                else:
                    child_size, child_depth = done[id(child)]
                    size += child_size
                    depth = max(depth, child_depth + 1)
            if size > MAX_EXPANDED_NODES:
                raise YAMLProblem(
                    f"with its aliases (*name) written out this value would hold more than "
                    f"{MAX_EXPANDED_NODES:,} values; refused as an alias bomb",
                    loader.file_line(node.start_mark),
                )
            if depth > MAX_DEPTH:
                raise YAMLProblem(
                    f"nested more than {MAX_DEPTH} levels deep",
                    loader.file_line(node.start_mark),
                )
            done[id(node)] = (size, depth)
        elif id(node) in open_:
            problem = "an alias (*name) refers to a value that contains it"
            raise YAMLProblem(problem, loader.file_line(node.start_mark))
        elif id(node) not in done:
            open_.add(id(node))
            children = _children(node)
            stack.append((node, children))
            stack.extend((child, None) for child in children if id(child) not in done)


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value)


def line_of(mapping: Any, key: Any) -> int | None:
    """The line a key was written on, if the mapping came from :func:`load_yaml`."""
    if isinstance(mapping, LineDict):
        return mapping.key_lines.get(key, mapping.line or None)
    return None


# -- front matter: a fast path for what newsrooms write ---------------------------------------

_SIMPLE_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*):(?: (.*))?")
# What a plain scalar may hold here: YAML's printable characters without its line breaks
# (NEL, LS, PS), the byte order mark, "#" (a comment may start) and tabs; anything else, and
# any scalar that starts with an indicator or holds ": ", goes to PyYAML.
_PLAIN = re.compile(r"[^\x00-\x1f\x7f-\x9f#\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]*")
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_FLOW_UNSAFE = frozenset(":[]{}")
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "bool", "int", "float", "null", "timestamp")
)
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def plain_front_matter(text: str, first_line: int = 2) -> LineDict | None:
    """Front matter as :func:`load_yaml` reads it (``aliases=False``), in a fraction of the
    time, or None: then ask :func:`load_yaml`.

    Newsrooms write flat ``key: value`` lines and lists in brackets; a cold start reads a
    million of them. Those are read here, each scalar typed by PyYAML's own resolver and
    constructors (so ``yes``, ``2025-05-01`` and ``0o17`` mean what they mean to PyYAML);
    anything else (nesting, quotes with escapes, comments, anchors, a duplicate key, an
    indicator where this reader is not sure) is left to PyYAML. ``tests/test_yamlfile.py``
    compares both on generated and hostile front matter. Its strings are slices of ``text`` (no
    escapes are read), so a text without some character gives strings without it.
    """
    result = LineDict()
    for number, line in enumerate(text.split("\n"), start=first_line):
        if not line.strip(" "):
            continue
        if line.startswith("#"):
            if not _plain(line[1:].replace("#", "")):
                return None
            continue
        matched = _SIMPLE_KEY.fullmatch(line)
        if matched is None:
            return None
        key, raw = matched.group(1), matched.group(2)
        # YAML limits an implicit key to 1024 characters; real keys are short.
        if key in result or not _plain_key(key):
            return None
        value = _value((raw or "").strip(" "))
        if value is _UNSURE:
            return None
        if not result:
            result.line = number
        result[key] = value
        result.key_lines[key] = number
    return result or None


_UNSURE = object()
# The one form of date newsrooms' tools write, read by datetime itself (as PyYAML reads it).
_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:[+-][0-9]{2}:[0-9]{2}|Z)")


@lru_cache(maxsize=256)
def _plain_key(key: str) -> bool:
    return len(key) <= 64 and _resolve(key) == "tag:yaml.org,2002:str"


def _value(raw: str) -> Any:
    if not raw:
        return None
    first = raw[0]
    if first == "[" and raw[-1] == "]":
        inner = raw[1:-1]
        values = _flow_list(inner) if len(inner) <= _CACHED_LIST else _read_flow_list(inner)
        return _UNSURE if values is None else list(values)
    if first == "'" and raw[-1] == "'" and len(raw) > 1:
        inner = raw[1:-1]
        if "'" in inner.replace("''", "") or not _plain(inner.replace("#", "")):
            return _UNSURE
        return inner.replace("''", "'")
    if first == '"' and raw[-1] == '"' and len(raw) > 1:
        inner = raw[1:-1]
        if '"' in inner or "\\" in inner or not _plain(inner.replace("#", "")):
            return _UNSURE
        return inner
    if ": " in raw or raw.endswith(":"):
        return _UNSURE
    return _scalar(raw)


def _read_flow_list(inner: str) -> tuple[Any, ...] | None:
    """The items of a list in brackets, or None when unsure."""
    if not inner.strip(" "):
        return ()
    items = [item.strip(" ") for item in inner.split(",")]
    if any(not item or _FLOW_UNSAFE & set(item) for item in items):
        return None
    values = tuple(_scalar(item) for item in items)
    return None if any(v is _UNSURE for v in values) else values


# Articles repeat a few hundred short lists of topics and tags: those are read once (the caller
# copies the answer); a long one is not kept (4,096 of them could hold a gigabyte).
_flow_list = lru_cache(maxsize=4096)(_read_flow_list)
_CACHED_LIST = 200


def _scalar(raw: str) -> Any:
    """A plain scalar as PyYAML types it, or _UNSURE for one this reader does not take."""
    if raw[0] in _INDICATORS or "  " in raw or not _plain(raw):
        return _UNSURE
    if _STAMP.fullmatch(raw):  # PyYAML resolves it as a timestamp (no int or float has a "T")
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            return raw  # as PyYAML's construction fails on it, and _construct_timestamp keeps it
    tag = _resolve(raw)
    if tag not in _SCALAR_TAGS:
        return _UNSURE
    if tag == "tag:yaml.org,2002:str":
        return raw  # what construct_yaml_str makes of a plain scalar
    node = ScalarNode(tag, raw)
    if tag == "tag:yaml.org,2002:timestamp":
        try:
            return _CONSTRUCTOR.construct_yaml_timestamp(node)
        except (ValueError, OverflowError):
            return raw
    return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, node)


def _plain(text: str) -> bool:
    """Whether ``text`` holds only what :data:`_PLAIN` allows; every character it leaves out but
    "#" is unprintable, and most text is printable, which is quicker to tell than the match."""
    return (text.isprintable() and "#" not in text) or _PLAIN.fullmatch(text) is not None


def _resolve(value: str) -> str:
    resolvers = _RESOLVERS.get(value[0] if value else "")
    if not resolvers:  # most strings: no implicit type starts with their first character
        return "tag:yaml.org,2002:str"
    return next((tag for tag, pattern in resolvers if pattern.match(value)), "tag:yaml.org,2002:str")


_RESOLVERS = yaml.resolver.Resolver.yaml_implicit_resolvers
