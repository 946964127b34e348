"""Cutting a batch of events: partitions keep each key's order, runs keep barriers, waves keep
the given order and never hold one owner twice."""

from __future__ import annotations

import pytest

from bot.domain.batches import in_waves, partition, runs


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        pytest.param([], {}, id="nothing"),
        pytest.param(["a1"], {"a": [(0, "a1")]}, id="one"),
        pytest.param(
            ["a1", "b1", "a2", "c1", "b2", "a3"],
            {"a": [(0, "a1"), (2, "a2"), (5, "a3")], "b": [(1, "b1"), (4, "b2")], "c": [(3, "c1")]},
            id="interleaved: each key's items in order, with their positions",
        ),
        pytest.param(
            ["b1", "a1", "b2"],
            {"b": [(0, "b1"), (2, "b2")], "a": [(1, "a1")]},
            id="first seen first",
        ),
    ],
)
def test_partition(items: list[str], expected: dict[str, list[tuple[int, str]]]) -> None:
    parts = partition(items, key=lambda item: item[0])
    assert parts == expected
    assert list(parts) == list(expected)  # partitions in the order of their first item


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        pytest.param([], [], id="nothing"),
        pytest.param(["p1", "p2", "p3"], [["p1", "p2", "p3"]], id="one run"),
        pytest.param(["X"], [["X"]], id="a barrier alone"),
        pytest.param(
            ["p1", "p2", "X", "p3", "Y", "Z", "p4"],
            [["p1", "p2"], ["X"], ["p3"], ["Y"], ["Z"], ["p4"]],
            id="barriers cut runs, and stand alone even when adjacent",
        ),
        pytest.param(["X", "p1"], [["X"], ["p1"]], id="barrier first"),
    ],
)
def test_runs(items: list[str], expected: list[list[str]]) -> None:
    assert runs(items, lambda item: item.startswith("p")) == expected


@pytest.mark.parametrize(
    ("owners", "expected"),
    [
        pytest.param([], [], id="nothing"),
        pytest.param(["a", "b", "c"], [[0, 1, 2]], id="all different: one wave"),
        pytest.param(["a", "a", "a"], [[0], [1], [2]], id="one owner: one wave each"),
        pytest.param(
            ["a", "b", "a", "c", "b", "d"],
            [[0, 1], [2, 3, 4, 5]],
            id="a repeat starts a new wave; waves are consecutive",
        ),
        pytest.param(
            ["a", "b", "c", "c", "a"], [[0, 1, 2], [3, 4]], id="the second wave takes what follows"
        ),
    ],
)
def test_in_waves(owners: list[str], expected: list[list[int]]) -> None:
    waves = in_waves(owners)
    assert waves == expected
    assert [i for wave in waves for i in wave] == list(range(len(owners)))  # order kept
    assert all(len({owners[i] for i in wave}) == len(wave) for wave in waves)
