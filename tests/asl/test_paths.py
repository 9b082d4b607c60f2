import copy

import pytest

from cvpipe.asl.errors import RESULT_PATH_MATCH_FAILURE, RUNTIME, StatesError
from cvpipe.asl.paths import compact_json, get_path, path_exists, set_path, validate_path

pytestmark = pytest.mark.unit

STORE = {
    "store": {
        "book": [
            {"category": "reference", "author": "Nigel Rees", "title": "Sayings", "price": 8.95},
            {"category": "fiction", "author": "Evelyn Waugh", "title": "Sword", "price": 12.99},
            {
                "category": "fiction",
                "author": "J. R. R. Tolkien",
                "title": "Rings",
                "price": 22.99,
                "isbn": "0-395",
            },
        ],
        "bicycle": {"color": "red", "price": 19.95},
    },
    "a": {"b": [{"c d": 1, "e.f": 2, "it's": 3}], "x-y": "dash", "nothing": None},
    "text": "hello",
}
CONTEXT = {"Execution": {"Id": "arn:exec", "Input": {"items": [1, 2]}}, "Map": {"Item": {"Value": {"v": 7}}}}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", STORE),
        ("$.text", "hello"),
        ("$.a.b[0]['c d']", 1),
        ('$.a.b[0]["c d"]', 1),
        ("$['a']['b'][0]['e.f']", 2),
        ("$.a.b[0]['it\\'s']", 3),
        ("$.a.x-y", "dash"),
        ("$.a.['x-y']", "dash"),  # AWS's documented form for names that need brackets
        ("$.store.book[-1].title", "Rings"),
        ("$.store.book[ 1 ].title", "Sword"),
        ("$.a.nothing", None),
    ],
)
def test_definite_path_returns_the_value(path, expected):
    assert get_path(path, STORE) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.store.book[*].author", ["Nigel Rees", "Evelyn Waugh", "J. R. R. Tolkien"]),
        ("$.store.bicycle.*", ["red", 19.95]),
        ("$.store.book[1:].title", ["Sword", "Rings"]),
        ("$.store.book[-2:].title", ["Sword", "Rings"]),
        ("$.store.book[0,2].title", ["Sayings", "Rings"]),
        ("$.store.book[?(@.price > 10)].title", ["Sword", "Rings"]),
        ("$.store.book[?(@.price > 10 && @.category == 'fiction')].title", ["Sword", "Rings"]),
        ("$.store.book[?(@.isbn)].title", ["Rings"]),
        ("$.store.book[*].isbn", ["0-395"]),
        ("$.store.book[?(@.price > 100)]", []),
        ("$.store.book[0:1]", [STORE["store"]["book"][0]]),
    ],
)
def test_indefinite_path_returns_the_list_of_matches(path, expected):
    assert get_path(path, STORE) == expected


def test_recursive_descent_finds_every_match():
    assert sorted(get_path("$..price", STORE)) == [8.95, 12.99, 19.95, 22.99]


def test_context_paths_read_the_context_object():
    assert get_path("$$.Execution.Id", STORE, CONTEXT) == "arn:exec"
    assert get_path("$$.Map.Item.Value.v", STORE, CONTEXT) == 7
    assert get_path("$$", STORE, CONTEXT) == CONTEXT
    assert get_path("$$.Execution.Input.items[*]", {}, CONTEXT) == [1, 2]


def test_context_path_without_a_context_finds_nothing():
    with pytest.raises(StatesError) as raised:
        get_path("$$.Execution.Id", STORE)
    assert raised.value.error == RUNTIME


@pytest.mark.parametrize(
    ("path", "reached"),
    [
        ("$.missing", "$['missing']"),
        ("$.a.missing.deeper", "$['a']['missing']"),
        ("$.text.length", "$['text']['length']"),  # a member of a string
        ("$.a[0]", "$['a'][0]"),  # an index into an object
        ("$.missing[*].x", "$['missing']"),  # the definite prefix of an indefinite path must exist
        ("$.a.b[5].x", "$['a']['b'][5]"),  # past the end, then a step further
    ],
)
def test_a_path_that_finds_nothing_is_a_runtime_error_naming_it(path, reached):
    with pytest.raises(StatesError) as raised:
        get_path(path, STORE)
    assert raised.value.error == RUNTIME
    assert raised.value.cause == f"Invalid path '{path}' : No results for path: {reached}"


def test_an_index_past_the_end_reads_as_null_like_aws():
    assert get_path("$.a.b[5]", STORE) is None
    assert get_path("$.a.b[-9]", STORE) is None


def test_invalid_path_syntax_is_a_runtime_error():
    with pytest.raises(StatesError) as raised:
        get_path("$.a[", STORE)
    assert raised.value.error == RUNTIME
    assert "$.a[" in raised.value.cause


@pytest.mark.parametrize(
    ("path", "exists"),
    [
        ("$", True),
        ("$.a.nothing", True),
        ("$.a.b[0]['c d']", True),
        ("$.missing", False),
        ("$.a.missing.deeper", False),
        ("$.text.length", False),
        ("$.a.b[1]", False),
        ("$.store.book[?(@.isbn)]", True),
        ("$.store.book[?(@.price > 100)]", False),
        ("$.missing[*]", False),
    ],
)
def test_path_exists(path, exists):
    assert path_exists(path, STORE) is exists


def test_path_exists_in_the_context_object():
    assert path_exists("$$.Execution.Id", {}, CONTEXT)
    assert not path_exists("$$.Execution.Name", {}, CONTEXT)
    assert not path_exists("$$.Execution.Id", {})


class TestSetPath:
    def test_dollar_replaces_the_whole_input(self):
        assert set_path({"a": 1}, "$", [1, 2]) == [1, 2]

    def test_adds_a_member(self):
        assert set_path({"a": 1}, "$.b", 2) == {"a": 1, "b": 2}

    def test_overwrites_a_member(self):
        assert set_path({"a": 1, "b": 0}, "$.b", {"x": 1}) == {"a": 1, "b": {"x": 1}}

    def test_creates_missing_intermediate_objects(self):
        assert set_path({"a": {"keep": 1}}, "$.a.b.c", 5) == {"a": {"keep": 1, "b": {"c": 5}}}

    def test_bracket_names_and_existing_array_indexes(self):
        data = {"list": [{"x": 1}, {"x": 2}]}
        assert set_path(data, "$.list[1]['new key']", 3) == {"list": [{"x": 1}, {"x": 2, "new key": 3}]}
        assert set_path(data, "$.list[-1]", None) == {"list": [{"x": 1}, None]}

    def test_never_mutates_the_input(self):
        data = {"a": {"b": {"c": 1}}, "other": {"d": [1]}}
        snapshot = copy.deepcopy(data)
        result = set_path(data, "$.a.b.c", 2)
        assert data == snapshot
        assert result == {"a": {"b": {"c": 2}}, "other": {"d": [1]}}

    @pytest.mark.parametrize(
        ("data", "path"),
        [
            ({"a": "text"}, "$.a.b"),
            ({"a": 5}, "$.a.b"),
            ({"a": None}, "$.a.b"),
            ("plain string", "$.a"),
            ([1, 2], "$.a"),
            ({"list": [1]}, "$.list[3]"),
            ({"obj": {}}, "$.obj[0]"),
            ({}, "$.missing[0]"),
        ],
    )
    def test_a_path_that_cannot_be_applied_is_a_result_path_match_failure(self, data, path):
        with pytest.raises(StatesError) as raised:
            set_path(data, path, 1)
        assert raised.value.error == RESULT_PATH_MATCH_FAILURE
        assert raised.value.cause.startswith(f"Unable to apply ReferencePath {path} to input ")

    def test_the_failure_shows_the_input_as_aws_does(self):
        with pytest.raises(StatesError) as raised:
            set_path({"a": "x"}, "$.a.b", 1)
        assert raised.value.cause == 'Unable to apply ReferencePath $.a.b to input "{\\"a\\":\\"x\\"}"'

    @pytest.mark.parametrize("path", ["$$.Execution", "$.a[*]", "$..a"])
    def test_only_reference_paths_into_the_input_are_accepted(self, path):
        with pytest.raises(StatesError):
            set_path({"a": [1]}, path, 1)


@pytest.mark.parametrize(
    "path",
    [
        "$",
        "$$",
        "$.a",
        "$.a.b[0]['c d']",
        "$$.Execution.Input",
        "$.a[*]",
        "$..x",
        "$.a[?(@.b > 1)]",
        "$.a[1:2]",
    ],
)
def test_valid_paths(path):
    assert validate_path(path) is None


@pytest.mark.parametrize("path", ["a.b", "", "$.a[", "$.a b", "$[?(@.a >)]", 5, None])
def test_invalid_paths(path):
    assert validate_path(path)


@pytest.mark.parametrize("path", ["$", "$.a.b", "$['a b'][0].c", "$.a[-1]"])
def test_valid_reference_paths(path):
    assert validate_path(path, reference=True) is None


@pytest.mark.parametrize(
    "path", ["$.a[*]", "$.a.*", "$..a", "$.a[?(@.b)]", "$.a[0:1]", "$.a[0,1]", "$['a','b']"]
)
def test_reference_paths_identify_a_single_node(path):
    assert validate_path(path) is None
    assert "not a Reference Path" in validate_path(path, reference=True)


def test_compact_json_matches_aws_output():
    assert compact_json({"a": [1, 2.5, "é"], "b": None}) == '{"a":[1,2.5,"é"],"b":null}'


def test_non_ascii_member_names():
    assert get_path("$.café.naïve", {"café": {"naïve": 1}}) == 1
