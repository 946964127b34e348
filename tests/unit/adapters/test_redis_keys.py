"""Redis keys and Cluster hash slots (bot/adapters/redis_keys.py), and the credentials of a
Sentinel or Cluster ``REDIS_URL``.

The slot rule is checked three ways: here on the helpers and on the source of every store module
(no script made around the rule, no ``MULTI``); at every script call in every test that touches
the embedded server (``Script`` raises ``CrossSlot``); and on a real cluster in
tests/integration/test_store_topologies.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bot.adapters.redis_keys import CrossSlot, Script, beside, hashed, same_hash, slot
from bot.adapters.store.connection import Credentials, credentials
from bot.adapters.store.inbox import dedup_key, stream_name

BOT = Path(__file__).parents[3] / "bot"


@pytest.mark.parametrize(
    ("key", "hashes_on"),
    [
        ("events:gitlab", "events:gitlab"),
        ("pipelines:{shop/orders}:42", "shop/orders"),
        ("outbox:want:{#payments}:pipeline:{x}:1", "#payments"),  # the first tag only
        ("a{}b", "a{}b"),  # an empty tag is no tag
        ("a{b", "a{b"),  # nor an unclosed one
    ],
)
def test_a_key_hashes_on_its_tag_or_whole_name(key: str, hashes_on: str) -> None:
    assert hashed(key) == hashes_on


def test_a_key_beside_an_anchor_lands_in_the_anchors_slot() -> None:
    assert beside("events:gitlab", "dedup", "uuid-1") == "dedup:{events:gitlab}:uuid-1"
    assert beside("outbox:q:{#payments}", "outbox:want", "k") == "outbox:want:{#payments}:k"
    assert slot(dedup_key("gitlab", "uuid-1")) == slot(stream_name("gitlab"))
    assert slot(beside("pipelines:{shop/orders}:1", "x")) == slot("pipelines:{shop/orders}:2")


def test_keys_of_one_script_must_hash_on_one_string() -> None:
    same_hash(["events:gitlab", "dedup:{events:gitlab}:1"])
    same_hash(["lonely"])
    with pytest.raises(CrossSlot, match="hash on one string"):
        same_hash(["locks:production", "locks:envs"])


class _Recorder:
    def register_script(self, source: str) -> object:
        return self

    async def __call__(self, **_: object) -> None:
        raise AssertionError("a script with keys of two slots must not reach Redis")


async def test_a_script_called_across_slots_fails_before_reaching_redis() -> None:
    script = Script(_Recorder(), "return 1")
    with pytest.raises(CrossSlot):
        await script(keys=["rollouts:a", "rollouts:active"], args=[])


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
    ]


@pytest.mark.parametrize("path", sorted(BOT.rglob("*.py")), ids=lambda p: str(p.relative_to(BOT)))
def test_store_code_keeps_to_the_slot_rule(path: Path) -> None:
    """Scripts only through ``redis_keys.script`` (checked at each call); no ``MULTI``."""
    if path.name == "redis_keys.py" or "sandbox" in path.parts:
        return
    tree = ast.parse(path.read_text())
    assert not _calls(tree, "register_script"), "make scripts with bot.adapters.redis_keys.script"
    for call in _calls(tree, "pipeline"):
        for keyword in call.keywords:
            if keyword.arg == "transaction":
                value = keyword.value
                assert isinstance(value, ast.Constant), "transaction= must be a literal False"
                assert value.value is False, (
                    "no MULTI (pipeline(transaction=True)): a cluster allows it in one slot only;"
                    " write a script"
                )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+sentinel://:s3cret@s1:26379,s2/pitcrew/2", Credentials(None, "s3cret")),
        ("redis+sentinel://app:p%40ss@[::1]:26379/m", Credentials("app", "p@ss")),
        ("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001", Credentials(None, "pw")),
        ("redis+cluster://redis-cluster", Credentials()),
    ],
)
def test_the_password_of_sentinels_and_clusters_is_read_from_the_url(
    url: str, expected: Credentials
) -> None:
    """``bot.redis_url`` reads the rest (tests/unit/test_redis_url.py)."""
    assert credentials(url) == expected
    assert "s3cret" not in repr(credentials(url))
