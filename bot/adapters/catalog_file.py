"""The catalog from a local file (``CATALOG_PATH``): a mounted ConfigMap, the demo, the tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.services.catalog import CatalogUnavailable

__all__ = ["FileCatalogSource"]


class FileCatalogSource:
    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)

    async def read(self) -> tuple[str, str]:
        try:
            text = await asyncio.to_thread(self._path.read_text, encoding="utf-8")
        except FileNotFoundError as exc:
            raise CatalogUnavailable(f"catalog file not found: {self._path}") from exc
        except UnicodeDecodeError as exc:
            raise CatalogUnavailable(f"catalog file is not UTF-8 text: {self._path}") from exc
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            raise CatalogUnavailable(f"cannot read catalog file {self._path}: {reason}") from exc
        return str(self._path), text
