"""The catalog in force survives bad edits and unreadable sources (SPEC 3: the last valid stays)."""

from __future__ import annotations

import asyncio

import pytest

from bot.domain.catalog import CatalogError
from bot.services.catalog import (
    CatalogHolder,
    CatalogNotLoaded,
    CatalogUnavailable,
)

GOOD = """\
teams:
  payments:
    channel: "#payments-deploys"
    oncall: "@payments-oncall"
environments:
  - name: staging
    policy: auto
apps:
  orders:
    team: payments
    source: shop/orders
    image: registry.example.com/shop/orders
    manifests: "apps/orders/{env}/deployment.yaml"
"""

GOOD_WITH_SEARCH = (
    GOOD.replace("environments:", '  search:\n    channel: "#search-deploys"\nenvironments:')
    + """\
  search-api:
    team: search
    source: shop/search-api
    image: registry.example.com/shop/search-api
    manifests: "apps/search-api/{env}/values.yaml"
    version_key: image.tag
"""
)

TYPO = GOOD.replace("team: payments", "team: paymnts")


class MemorySource:
    """A catalog file that the test edits; ``None`` stands for a file that cannot be read."""

    def __init__(self, text: str | None) -> None:
        self.text = text
        self.reads = 0

    async def read(self) -> tuple[str, str]:
        self.reads += 1
        await asyncio.sleep(0)  # let a concurrent reload interleave, as real I/O would
        if self.text is None:
            raise CatalogUnavailable("catalog file not found: catalog.yaml")
        return "catalog.yaml", self.text


async def loaded(text: str) -> tuple[CatalogHolder, MemorySource]:
    source = MemorySource(text)
    holder = CatalogHolder(source)
    result = await holder.reload()
    assert result.outcome == "loaded"
    return holder, source


async def test_first_load_puts_the_catalog_in_force() -> None:
    holder = CatalogHolder(MemorySource(GOOD))

    result = await holder.reload()

    assert result.outcome == "loaded"
    assert result.error is None
    assert result.catalog is holder.current
    assert holder.current.app_names == ("orders",)


async def test_catalog_is_not_there_before_the_first_load() -> None:
    holder = CatalogHolder(MemorySource(GOOD))

    with pytest.raises(CatalogNotLoaded):
        _ = holder.current


async def test_invalid_first_load_stops_start_up_with_file_and_line() -> None:
    holder = CatalogHolder(MemorySource(TYPO))

    with pytest.raises(CatalogError) as caught:
        await holder.reload()

    assert str(caught.value) == (
        'catalog.yaml:10: apps.orders.team: unknown team "paymnts" (did you mean "payments"?)'
    )
    with pytest.raises(CatalogNotLoaded):
        _ = holder.current


async def test_unreadable_first_load_stops_start_up() -> None:
    holder = CatalogHolder(MemorySource(None))

    with pytest.raises(CatalogUnavailable, match=r"catalog file not found: catalog\.yaml"):
        await holder.reload()


async def test_an_edit_is_loaded() -> None:
    holder, source = await loaded(GOOD)
    source.text = GOOD_WITH_SEARCH

    result = await holder.reload()

    assert result.outcome == "loaded"
    assert holder.current.app_names == ("orders", "search-api")
    assert holder.current.channel_for_app("search-api") == "#search-deploys"


async def test_same_text_is_unchanged_and_keeps_the_same_catalog() -> None:
    holder, _ = await loaded(GOOD)
    before = holder.current

    result = await holder.reload()

    assert result.outcome == "unchanged"
    assert result.error is None
    assert holder.current is before


async def test_invalid_edit_is_reported_and_the_last_valid_catalog_stays() -> None:
    holder, source = await loaded(GOOD)
    before = holder.current
    source.text = TYPO

    result = await holder.reload()

    assert result.outcome == "invalid"
    assert isinstance(result.error, CatalogError)
    assert [p.field for p in result.error.problems] == ["apps.orders.team"]
    assert result.catalog is before
    assert holder.current is before


async def test_the_same_invalid_text_is_reported_once_then_unchanged() -> None:
    holder, source = await loaded(GOOD)
    source.text = TYPO
    first = await holder.reload()

    again = await holder.reload()

    assert first.outcome == "invalid"
    assert again.outcome == "unchanged"
    assert again.error is first.error
    assert holder.current.app("orders").team == "payments"


async def test_a_fixed_catalog_after_an_invalid_one_is_loaded() -> None:
    holder, source = await loaded(GOOD)
    source.text = TYPO
    await holder.reload()
    source.text = GOOD_WITH_SEARCH

    result = await holder.reload()

    assert result.outcome == "loaded"
    assert result.error is None
    assert holder.current.app_names == ("orders", "search-api")


async def test_unreadable_source_keeps_the_last_valid_catalog() -> None:
    holder, source = await loaded(GOOD)
    before = holder.current
    source.text = None

    result = await holder.reload()

    assert result.outcome == "unavailable"
    assert isinstance(result.error, CatalogUnavailable)
    assert holder.current is before


async def test_concurrent_reloads_parse_a_new_text_once() -> None:
    holder, source = await loaded(GOOD)
    source.text = GOOD_WITH_SEARCH

    results = await asyncio.gather(holder.reload(), holder.reload())

    assert sorted(r.outcome for r in results) == ["loaded", "unchanged"]
    assert holder.current.app_names == ("orders", "search-api")
