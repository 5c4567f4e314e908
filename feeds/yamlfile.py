"""YAML parsing that remembers line numbers and refuses duplicate keys.

PyYAML silently lets a repeated key win; an operator who pastes a feed twice deserves an
error instead. Every mapping comes back as a :class:`LineDict` so later validation can say
which line a bad value is on.
"""

from __future__ import annotations

from typing import Any

import yaml

try:
    _Base: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - only without libyaml
    _Base = yaml.SafeLoader


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


class _Duplicate(YAMLProblem):
    def __init__(self, key: Any, first: int, line: int) -> None:
        super().__init__(f"duplicate key {key!r}", line)
        self.key, self.first = key, first


class _Loader(_Base):  # type: ignore[misc]
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        result = LineDict()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise YAMLProblem("a key must be a plain value", key_node.start_mark.line + 1) from None
            if key in result:
                raise _Duplicate(key, result.key_lines[key], key_node.start_mark.line + 1)
            result[key] = self.construct_object(value_node, deep=deep)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Any:
    # A generator constructor (PyYAML's default) would hand back the dict before it is
    # filled, so duplicate detection would run too late; build it eagerly.
    return loader.construct_mapping(node, deep=True)


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    # "2025-13-45" matches YAML's timestamp pattern but is no date; keep the text so the
    # caller can report it with its line instead of the whole document failing.
    try:
        return loader.construct_yaml_timestamp(node)
    except (ValueError, OverflowError):
        return loader.construct_scalar(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def load_yaml(text: str, first_line: int = 1, *, aliases: bool = True) -> Any:
    """Parse one YAML document safely; ``first_line`` shifts reported lines (front matter)."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except _Duplicate as exc:
        message = f"{exc.message} (first given on line {exc.first + first_line - 1})"
        raise YAMLProblem(message, (exc.line or 1) + first_line - 1) from None
    except YAMLProblem as exc:
        raise YAMLProblem(exc.message, (exc.line or 1) + first_line - 1) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + first_line if mark is not None else None
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise YAMLProblem(f"invalid YAML: {message}", line) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise YAMLProblem(f"invalid YAML: {exc}", first_line) from None
    _shift(data, first_line - 1)
    return data


def _shift(value: Any, offset: int) -> None:
    if not offset:
        return
    if isinstance(value, LineDict):
        value.line += offset
        value.key_lines = {k: v + offset for k, v in value.key_lines.items()}
        for item in value.values():
            _shift(item, offset)
    elif isinstance(value, list):
        for item in value:
            _shift(item, offset)


def line_of(mapping: Any, key: Any) -> int | None:
    """The line a key was written on, if the mapping came from :func:`load_yaml`."""
    if isinstance(mapping, LineDict):
        return mapping.key_lines.get(key, mapping.line or None)
    return None
