"""MQTT topic names and filters (pki.dataplane.topics) against OASIS MQTT 3.1.1 / 5.0 section 4.7."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pki.dataplane import topics
from pki.dataplane.topics import (covers, matches, overlaps, split_shared, substitute, validate_filter,
                                  validate_topic)
from pki.errors import ERROR_CODES, InvalidInput

BAD_FILTERS = ["a/#/b", "a+/b", "#/a", "a/b#", "+a", "a/+b/c", "##", "", "a\x00b", "a\nb", "a\x7f",
               "\ud800", "x" * 65_536, "é" * 32_768]


@pytest.mark.parametrize("text", BAD_FILTERS, ids=lambda t: repr(t)[:20])
def test_bad_filters_are_refused_with_a_stable_code(text):
    with pytest.raises(InvalidInput) as err:
        validate_filter(text)
    assert err.value.code == "invalid_topic_filter" and ERROR_CODES["invalid_topic_filter"] == "invalid_input"
    assert not topics.is_valid_filter(text)


@pytest.mark.parametrize("text", ["#", "+", "a/#", "+/+", "/+", "a//b", "/", "sport/tennis/+/#", "$SYS/#",
                                  "a b/c", "x" * 65_535, "é" * 32_767, "日本/+"])
def test_good_filters_pass(text):
    assert validate_filter(text) == text


@pytest.mark.parametrize("text", ["a/+", "#", "a/#", "", "a\x00", "x" * 65_536, 3])
def test_bad_topic_names_are_refused(text):
    with pytest.raises(InvalidInput) as err:
        validate_topic(text)
    assert err.value.code == "invalid_topic"


def test_placeholders_only_when_asked_and_only_known_ones():
    assert validate_filter("devices/${clientid}/#", placeholders=True)
    assert validate_filter("u-${username}/x", placeholders=True)
    validate_filter("a/${other}")  # without placeholders it is literal text
    for bad in ("a/${other}", "a/${clientid", "${ClientId}/x"):
        with pytest.raises(InvalidInput, match="placeholder"):
            validate_filter(bad, placeholders=True)


# The examples of section 4.7.1 and 4.7.2.
@pytest.mark.parametrize("filt,topic,expected", [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("#", "$SYS/uptime", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("a/b", "a/b", True),
    ("a/b", "A/b", False),
])
def test_spec_examples(filt, topic, expected):
    assert matches(filt, topic) is expected


def _reference(filt: str, topic: str) -> bool:
    """An independent matcher: the filter as a regular expression."""
    if topic.startswith("$") and filt[:1] in ("+", "#"):
        return False
    if filt == "#":
        return True
    parts = []
    for level in filt.split("/"):
        parts.append(None if level == "#" else "[^/]*" if level == "+" else re.escape(level))
    if parts[-1] is None:
        return re.fullmatch("/".join(parts[:-1]) + "(/.*)?", topic) is not None
    return re.fullmatch("/".join(parts), topic) is not None


_level = st.sampled_from(["a", "b", "", "$x", "ab"])
topic_names = st.lists(_level, min_size=1, max_size=5).map("/".join).filter(bool)
filters = st.builds(
    lambda levels, hashed: "/".join(levels + (["#"] if hashed else [])),
    st.lists(st.sampled_from(["a", "b", "", "+", "$x"]), min_size=0, max_size=4), st.booleans(),
).filter(bool)


@settings(max_examples=400, deadline=None)
@given(filters, topic_names)
def test_matches_equals_the_reference(filt, topic):
    assert topics.is_valid_filter(filt) and topics.is_valid_topic(topic)
    assert matches(filt, topic) is _reference(filt, topic)


def _instances(filt: str) -> list[str]:
    """Topic names the filter matches, built from it: + and # filled in several ways."""
    out = []
    for fill in ("a", "b", ""):
        levels = []
        for level in filt.split("/"):
            if level == "+":
                levels.append(fill)
            elif level == "#":
                out.append("/".join(levels) if levels else None)
                levels += [fill, "a"]
            else:
                levels.append(level)
        out.append("/".join(levels))
    return [t for t in out if t]


@settings(max_examples=400, deadline=None)
@given(filters, filters, topic_names)
def test_covers_and_overlaps_agree_with_matching(outer, inner, topic):
    if covers(outer, inner):
        for t in _instances(inner):
            if matches(inner, t):
                assert matches(outer, t), (outer, inner, t)
        if matches(inner, topic):
            assert matches(outer, topic)
    if matches(outer, topic) and matches(inner, topic):
        assert overlaps(outer, inner) and overlaps(inner, outer)
    assert overlaps(outer, inner) is overlaps(inner, outer)
    assert covers(outer, outer)


@settings(max_examples=300, deadline=None)
@given(filters, filters)
def test_overlaps_finds_a_witness(first, second):
    """When overlaps says yes, one of the filters' instances is matched by both."""
    if overlaps(first, second):
        witnesses = _instances(first) + _instances(second)
        assert any(matches(first, t) and matches(second, t) for t in witnesses), (first, second)


@pytest.mark.parametrize("outer,inner,expected", [
    ("a/#", "a/+/b", True), ("a/#", "a", True), ("a/+", "a/#", False), ("#", "$SYS/#", False),
    ("+/x", "+/x", True), ("a/+", "a/b", True), ("a/b", "a/+", False), ("$SYS/#", "$SYS/a", True),
])
def test_covers_examples(outer, inner, expected):
    assert covers(outer, inner) is expected


@pytest.mark.parametrize("client_id,username,expected", [
    ("dev1", "u", "devices/dev1/u/#"),
    ("dev+", "u", None), ("dev#", "u", None), ("a/b", "u", None), ("", "u", None), (None, "u", None),
    ("dev1", None, None), ("dev1", "x/y", None),
])
def test_substitute_never_widens(client_id, username, expected):
    assert substitute("devices/${clientid}/${username}/#", client_id=client_id, username=username) == expected


def test_substitute_inside_a_level_and_without_placeholders():
    assert substitute("d-${clientid}-x", client_id="7", username=None) == "d-7-x"
    assert substitute("plain/+", client_id=None, username=None) == "plain/+"


@given(st.text(max_size=12))
def test_a_substituted_value_stays_in_its_level(value):
    result = substitute("a/${clientid}/b", client_id=value, username=None)
    if result is not None:
        assert result == f"a/{value}/b" and "+" not in value and "#" not in value and "/" not in value


def test_shared_subscriptions():
    assert split_shared("$share/g1/a/+") == ("g1", "a/+")
    assert split_shared("a/b") == (None, "a/b")
    for bad in ("$share/", "$share/g", "$share//a", "$share/g+/a"):
        with pytest.raises(InvalidInput) as err:
            split_shared(bad)
        assert err.value.code == "invalid_topic_filter"
