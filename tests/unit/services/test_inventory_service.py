"""The inventory rebuild stops asking GitLab as soon as one read fails."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import pytest

from bot.domain.errors import PitcrewError
from bot.domain.inventory import Deployed, Inventory
from bot.services.catalog import CatalogHolder
from bot.services.inventory import FileChange, InventoryService

CATALOG = Path(__file__).parents[3] / "bot" / "sandbox" / "example_catalog.yaml"


class Source:
    async def read(self) -> tuple[str, str]:
        return "catalog.yaml", CATALOG.read_text()


class Down(PitcrewError):
    pass


class Files:
    """The first read fails at once; every other one waits (a slow GitLab)."""

    def __init__(self) -> None:
        self.waiting = 0
        self.cancelled = 0
        self.failed = False

    async def text(self, path: str) -> str | None:
        if not self.failed:
            self.failed = True
            await asyncio.sleep(0.01)  # the others have started by now
            raise Down("GitLab unreachable")
        self.waiting += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return None

    async def last_change(self, path: str) -> FileChange | None:
        return None


class Cache:
    async def load(self) -> Inventory:
        raise AssertionError("not used")

    async def save(self, entries: Iterable[Deployed], *, refreshed_at: datetime) -> None:
        raise AssertionError("a failed rebuild saves nothing")


async def test_a_failed_read_cancels_the_others_and_keeps_its_error() -> None:
    catalog = CatalogHolder(Source())
    await catalog.reload()
    files = Files()
    service = InventoryService(catalog=catalog, files=files, cache=Cache())
    with pytest.raises(Down, match="GitLab unreachable"):
        await service.rebuild()
    assert files.waiting > 0
    assert files.cancelled == files.waiting
