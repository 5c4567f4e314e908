"""YAML loading: lines, duplicate keys, and a cost bounded by the text, whatever the text."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from feeds import yamlfile
from feeds.yamlfile import (
    MAX_DEPTH,
    MAX_EXPANDED_NODES,
    LineDict,
    YAMLProblem,
    line_of,
    load_yaml,
    plain_front_matter,
)


def alias_bomb(depth: int, key: str = "tags") -> str:
    """Nine-way fan-out per level: 9**depth strings in a few hundred bytes (line 1 is "title")."""
    names = "abcdefghij"
    lines = ["title: T", "a: &a [" + ", ".join(['"x"'] * 9) + "]"]
    for here, below in zip(names[1:depth], names[: depth - 1], strict=True):
        lines.append(f"{here}: &{here} [" + ", ".join([f"*{below}"] * 9) + "]")
    lines.append(f"{key}: *{names[depth - 1]}")
    return "\n".join(lines) + "\n"


@pytest.fixture(params=[True, False], ids=["libyaml-caps-nesting", "event-precheck"])
def nesting_capped(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run both paths: libyaml >= 0.2.6 (nesting capped) and older ones or pure Python."""
    monkeypatch.setattr(yamlfile, "_NESTING_CAPPED", request.param and yamlfile._NESTING_CAPPED)
    return bool(request.param)


# --- aliases -------------------------------------------------------------------------------


def test_alias_bomb_in_front_matter_is_refused_at_the_first_alias(nesting_capped: bool) -> None:
    # On the old code this took minutes (the after-the-fact line shift walked 9**9 strings).
    with pytest.raises(YAMLProblem) as caught:
        load_yaml(alias_bomb(9), first_line=2, aliases=False)
    assert "aliases (*a) are not allowed in front matter" in caught.value.message
    assert caught.value.line == 4  # "b: &b [*a, ...]" is line 3 of the text, line 4 of the file


@pytest.mark.parametrize("key", ["tags", "title2", "anything"])
def test_alias_bomb_in_config_is_refused_by_the_expansion_bound(key: str, nesting_capped: bool) -> None:
    with pytest.raises(YAMLProblem) as caught:
        load_yaml(alias_bomb(9, key))
    assert f"more than {MAX_EXPANDED_NODES:,} values" in caught.value.message
    assert "alias bomb" in caught.value.message
    # a (9) b (81) ... f (9**6 > 100,000): the first value past the bound is on line 7.
    assert caught.value.line == 7


def test_merge_key_bomb_is_refused_before_merging() -> None:
    # Merging one mapping twice per level doubles the flattened key list: 2**40 pairs.
    lines = ["m0: &m0 {k: v}"] + [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}" for i in range(1, 41)]
    with pytest.raises(YAMLProblem, match="alias bomb"):
        load_yaml("\n".join(lines))


def test_expansion_just_under_the_bound_loads() -> None:
    text = alias_bomb(4)  # 9**4 = 6,561 strings: large, but no bomb
    data = load_yaml(text)
    assert sum(len(a) for c in data["tags"] for b in c for a in b) == 9**4


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: *a}\n", "a: &a {<<: *a}\n"])
def test_recursive_alias_is_refused(text: str) -> None:
    with pytest.raises(YAMLProblem, match="refers to a value that contains it"):
        load_yaml(text)


def test_front_matter_may_have_stars_and_anchors_but_no_alias(nesting_capped: bool) -> None:
    data = load_yaml('title: a*b\nsummary: "5 * 3"\ntags: &t [x]\n', first_line=2, aliases=False)
    assert data == {"title": "a*b", "summary": "5 * 3", "tags": ["x"]}
    with pytest.raises(YAMLProblem) as caught:
        load_yaml("title: T\ntags: &t [x]\nsources: *t\n", first_line=2, aliases=False)
    assert caught.value.line == 4
    assert "*t" in caught.value.message


def test_undefined_alias_is_invalid_yaml() -> None:
    with pytest.raises(YAMLProblem, match="undefined alias") as caught:
        load_yaml("a: 1\nb: *nope\n", first_line=3)
    assert caught.value.line == 4


# --- anchors and merge keys in config.yaml -------------------------------------------------

CONFIG = """\
defaults: &defaults
  limit: 20
  content: summary
  topics: [a, b]
feeds:
  one:
    <<: *defaults
    title: One
  two:
    <<: *defaults
    limit: 5
  three:
    <<: [{limit: 7, max_age: 60}, *defaults]
"""


def test_anchor_and_merge_key_config_loads_with_values_and_lines() -> None:
    data = load_yaml(CONFIG)
    one, two, three = data["feeds"]["one"], data["feeds"]["two"], data["feeds"]["three"]
    assert one == {"limit": 20, "content": "summary", "topics": ["a", "b"], "title": "One"}
    assert two == {"limit": 5, "content": "summary", "topics": ["a", "b"]}  # explicit key wins
    assert three == {"limit": 7, "max_age": 60, "content": "summary", "topics": ["a", "b"]}  # first wins
    # A merged key is reported where its value is written; an explicit one where it stands.
    assert line_of(one, "limit") == 2 and line_of(one, "title") == 8
    assert line_of(two, "limit") == 11 and line_of(two, "content") == 3
    assert line_of(three, "limit") == 13
    assert isinstance(one, LineDict) and one.line == 7
    assert data["defaults"] == {"limit": 20, "content": "summary", "topics": ["a", "b"]}  # untouched


def test_merge_of_a_non_mapping_is_invalid() -> None:
    with pytest.raises(YAMLProblem, match="expected a mapping or list of mappings for merging") as caught:
        load_yaml("x: 1\nk:\n  <<: [1]\n")
    assert caught.value.line == 3


# --- lines ---------------------------------------------------------------------------------


def test_key_lines_are_shifted_by_first_line() -> None:
    data = load_yaml("title: T\nauthor:\n  name: N\n  email: e@example.org\ntags: [x]\n", first_line=5)
    assert line_of(data, "title") == 5
    assert line_of(data, "tags") == 9
    assert data["author"].line == 7
    assert line_of(data["author"], "email") == 8
    assert line_of(data, "missing") == 5  # a key not given: the line of its mapping
    assert line_of(data["author"], "missing") == 7
    assert line_of({"title": "T"}, "title") is None


def test_shared_anchored_mapping_is_shifted_once() -> None:
    # The old code shifted the lines of a shared mapping once per reference (here: 4 times).
    data = load_yaml("a: &a\n  x: 1\nb: *a\nc: [*a, *a]\n", first_line=5)
    assert data["b"] is data["a"] and data["c"][0] is data["a"]
    assert data["a"].line == 5  # a mapping starts at its anchor
    assert line_of(data["b"], "x") == 6


# --- duplicate keys ------------------------------------------------------------------------


def test_duplicate_key_names_both_lines() -> None:
    with pytest.raises(YAMLProblem) as caught:
        load_yaml("a: 1\nb: 2\na: 3\n", first_line=2)
    assert caught.value.message == "duplicate key 'a' (first given on line 2)"
    assert caught.value.line == 4


def test_duplicate_key_in_nested_mapping_and_next_to_a_merge() -> None:
    with pytest.raises(YAMLProblem, match=r"duplicate key 'k' \(first given on line 3\)") as caught:
        load_yaml("d: &d {k: 1}\nx:\n  k: 2\n  <<: *d\n  k: 3\n")
    assert caught.value.line == 5


# --- nesting -------------------------------------------------------------------------------

DEEP = {
    "flow-lists": "[" * 100_000 + "]" * 100_000,
    "flow-mappings": "{a: " * 100_000 + "}" * 100_000,
    "block-lists": "- " * 100_000 + "x\n",
    "block-mappings": "".join(" " * i + "k:\n" for i in range(2_000)),
    "unclosed": "[" * 100_000,
}


@pytest.mark.parametrize("text", DEEP.values(), ids=DEEP.keys())
def test_deep_nesting_is_a_problem_not_a_crash(text: str, nesting_capped: bool) -> None:
    # Older libyaml (0.2.5) has no nesting cap and its composer segfaults on these.
    with pytest.raises(YAMLProblem, match="nest"):
        load_yaml(text, aliases=False)


def test_nesting_up_to_the_bound_loads(nesting_capped: bool) -> None:
    inner = "[" * (MAX_DEPTH - 1) + "x" + "]" * (MAX_DEPTH - 1)
    assert load_yaml(f"k: {inner}\n", aliases=False)["k"][0][0] is not None
    with pytest.raises(YAMLProblem, match=f"nested more than {MAX_DEPTH} levels deep") as caught:
        load_yaml(f"\nk: [{inner}]\n", first_line=3)
    assert caught.value.line == 4


def test_front_matter_without_aliases_keeps_both_bounds(nesting_capped: bool) -> None:
    """Small alias-free documents skip the graph walk; the bounds must still hold past it."""
    inner = "[" * (MAX_DEPTH - 1) + "x" + "]" * (MAX_DEPTH - 1)
    with pytest.raises(YAMLProblem, match=f"nested more than {MAX_DEPTH} levels deep"):
        load_yaml(f"k: [{inner}]\n", first_line=2, aliases=False)
    with pytest.raises(YAMLProblem, match="more than 100,000 values"):
        load_yaml("k: [" + "1, " * 100_001 + "]\n", first_line=2, aliases=False)


def test_nesting_through_an_alias_chain_is_counted_expanded() -> None:
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 2 * MAX_DEPTH)]
    with pytest.raises(YAMLProblem, match=f"nested more than {MAX_DEPTH} levels deep") as caught:
        load_yaml("\n".join(lines))
    assert caught.value.line == MAX_DEPTH + 1


# --- only plain data -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.mkdir",
        "!!python/object/new:os.mkdir",
        "!!python/name:os.mkdir",
        "!!python/object:pathlib.Path",
        "!!python/module:os",
    ],
)
def test_python_tags_are_refused_and_nothing_runs(tag: str, tmp_path: Path) -> None:
    target = tmp_path / "made-by-yaml"
    with pytest.raises(YAMLProblem, match="could not determine a constructor") as caught:
        load_yaml(f"title: T\nx: {tag} [{str(target)!r}]\n", first_line=2)
    assert caught.value.line == 3
    assert not target.exists()


@pytest.mark.parametrize(
    "text, line", [("? [a, b]\n: 1\n", 10), ("? {a: 1}\n: 1\n", 10), ("x: 1\n[a]: 2\n", 11)]
)
def test_a_key_must_be_a_plain_value(text: str, line: int) -> None:
    with pytest.raises(YAMLProblem, match="a key must be a plain value") as caught:
        load_yaml(text, first_line=10)
    assert caught.value.line == line


# --- unchanged behaviour -------------------------------------------------------------------


def test_impossible_timestamp_stays_text() -> None:
    data = load_yaml("date: 2025-13-45\nupdated: 2025-01-02\n")
    assert data == {"date": "2025-13-45", "updated": datetime.date(2025, 1, 2)}


def test_syntax_error_keeps_its_message_and_line() -> None:
    with pytest.raises(YAMLProblem) as caught:
        load_yaml("title: T\nfoo: a: b\n", first_line=2)
    assert caught.value.message == "invalid YAML: mapping values are not allowed in this context"
    assert caught.value.line == 3


def test_empty_document_is_none() -> None:
    assert load_yaml("", first_line=2, aliases=False) is None
    assert load_yaml("# only a comment\n") is None


# -- the front matter fast path ------------------------------------------------------------------

# Pieces of scalars that PyYAML types in every way it can: booleans, octal, sexagesimal, dates,
# nulls, floats, indicators, quotes, comments, YAML's other line breaks and unprintables.
_PIECES = [
    "Hallo", "Welt", "Städte", "ß", "🎉", " ", "  ", ",", ":", ": ", "#", " #", "-", "?", "[", "]",
    "{", "}", "'", "''", '"', "\\", "&a", "*a", "!", "!!str", "|", ">", "%", "@", "`", "=", "<<",
    "yes", "No", "ON", "off", "true", "y", "~", "null", "0", "010", "0o17", "0x1F", "0b101",
    "1_000", "1:30", "-1", "+2", ".5", "1e3", "1.5e+3", ".inf", ".NaN", "2025-05-01",
    "2025-05-01T08:00:00+02:00", "2025-05-01T23:59:60Z", "2025-02-30T08:00:00+00:00", "2025-05-01T08:00:00Z",
    "2025-05-01 08:00:00", "2025-13-45", "12:30:00", "\t", "\x85",
    "\u2028", "\ufeff", "\x07", "\x7f", "a" * 70,
]  # fmt: skip
_KEYS = ["title", "date", "topics", "tags", "author", "draft", "on", "yes", "null", "x-y", "_k", "a" * 70]


@st.composite
def front_matter(draw: st.DrawFn) -> str:
    def scalar() -> str:
        return "".join(draw(st.lists(st.sampled_from(_PIECES), min_size=0, max_size=4)))

    lines = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(
            st.sampled_from(["plain", "plain", "list", "single", "double", "blank", "comment", "raw"])
        )
        key = draw(st.sampled_from(_KEYS))
        if kind == "plain":
            lines.append(f"{key}:{draw(st.sampled_from([' ', '', '  ']))}{scalar()}")
        elif kind == "list":
            lines.append(f"{key}: [{', '.join(scalar() for _ in range(draw(st.integers(0, 3))))}]")
        elif kind == "single":
            lines.append(f"{key}: '{scalar()}'")
        elif kind == "double":
            lines.append(f'{key}: "{scalar()}"')
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", " ", "  "])))
        elif kind == "comment":
            lines.append(f"#{scalar()}")
        else:
            lines.append(scalar())
    return "\n".join(lines)


def _typed(value: object) -> object:
    """The value with the type of every part, so 1 and True and "1" never compare equal."""
    if isinstance(value, dict):
        return {_typed(k): _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float) and value != value:
        return (float, "nan")
    return (type(value), value)


@settings(max_examples=3000, deadline=None)
@given(front_matter())
def test_the_front_matter_fast_path_reads_what_pyyaml_reads(text: str) -> None:
    fast = plain_front_matter(text, 2)
    if fast is None:
        return  # PyYAML reads it (parsing falls back)
    slow = load_yaml(text, 2, aliases=False)  # must not raise: the fast path only takes valid YAML
    assert _typed(fast) == _typed(slow)
    assert (fast.line, fast.key_lines) == (slow.line, slow.key_lines)


def test_the_fast_path_takes_what_newsrooms_write() -> None:
    typical = (
        "id: nordkorea-kursk-2025\ntitle: Nordkoreanische Soldaten in Kursk\n"
        "date: 2025-04-28T09:30:00+02:00\ntopics: [Ukraine-Krieg, Nordkorea]\ntags: [kursk]\n"
        "author: Anna Beispiel\nimage: images/kursk.jpg\ndraft: false\n# eine Notiz\n"
    )
    fast = plain_front_matter(typical, 2)
    assert fast is not None and fast == load_yaml(typical, 2, aliases=False)
    for hostile in ("title: a: b", "a: &x [1]\nb: *x", "title: x\ntitle: y", "a:\n  b: c", "- a"):
        assert plain_front_matter(hostile, 2) is None  # PyYAML's answer, error or not, stands


@given(st.text(st.characters(codec=None, categories=None), max_size=20))
@example("Titel # kein Kommentar")
@example("\u00a0gesch\u00fctzt")
def test_the_quick_test_of_a_plain_scalar_agrees_with_its_pattern(text: str) -> None:
    assert yamlfile._plain(text) == (yamlfile._PLAIN.fullmatch(text) is not None)
