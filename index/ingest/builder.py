"""What front ends call to build: a ``Builder`` holds one ``BuildOptions`` and where notices
go, and builds or updates an index, waiting for another writer instead of failing, or fetches
pages into a docs folder and updates the index over it. ``qa.app.open_engine`` is handed one
to build an index that is missing or behind its docs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import IndexLocked
from ..models.spec import describe
from ..storage.layout import CURRENT, writer_lock
from .fetch import fetch as download
from .formats import FIELDS
from .job import BuildOptions, Report
from .pipeline import build_index, update_index

Say = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


@dataclass
class Builder:
    """How to build or update an index (``options``), and where notices go."""

    options: BuildOptions = field(default_factory=BuildOptions)
    notice: Say = _quiet

    @property
    def embedder(self) -> Any:
        return self.options.embedder

    @property
    def model_cache(self) -> Path | None:
        return self.options.model_cache

    @property
    def warn(self) -> Say:
        return self.options.warn

    def run(self, docs: Path, index: Path, update: bool = False) -> Report:
        """Build the index at ``index`` from ``docs`` (with ``update``: bring it in line)."""
        return (update_index if update else build_index)(docs, index, self.options)

    def run_or_wait(self, docs: Path, index: Path, update: bool) -> None:
        """Build or update; if another qa is writing the index, wait for it and then update
        (cheap when the other writer already did the work) instead of failing."""
        try:
            self.run(docs, index, update=update)
            return
        except IndexLocked:
            self.notice(f"another qa process is writing the index at {index}: waiting for it")
        with writer_lock(index, wait=True):
            pass
        if update or not (index / CURRENT).exists():
            self.run(docs, index, update=True)

    def fetch(self, urls: list[str], docs: Path, index: Path, *, feed: bool = False,
              fetcher: Any = None) -> tuple[list[Any], Report]:
        """Download ``urls`` (with ``feed``: every item link of those feeds) into ``docs``
        (robots.txt honoured; a URL that fails is a warning, the rest are kept), then update
        the index over that folder. Returns the downloads and the update's report."""
        results = download(urls, docs, feed=feed, warn=self.warn, fetcher=fetcher)
        saved = [r for r in results if r.path]
        self.notice(f"fetched {len(saved)} of {len(results)} page(s) into {docs}")
        return results, self.run(docs, index, update=True)

    def with_options(self, **changes: Any) -> Builder:
        """This builder with some options changed."""
        return Builder(replace(self.options, **changes), self.notice)


def make_builder(notice: Say = _quiet, model: str | Path | None = None,
                 fields: list[str] | None = None, **options: Any) -> Builder:
    """A ``Builder`` over ``BuildOptions(**options)``, building with ``model`` (a folder or a
    hub name, described; None: the default, or an index's own) and reading an export's
    ``fields`` from ``NAME=COLUMN`` pairs (``export_fields``: ValueError naming the fields)."""
    spec = describe(model) if model is not None else None
    return Builder(BuildOptions(model=spec, fields=export_fields(fields), **options), notice)


def export_fields(values: list[str] | None) -> dict[str, str] | None:
    """``NAME=COLUMN`` pairs (``--field text=story_body``) as the export columns to read each
    article field from; ValueError naming the fields for anything else."""
    if not values:
        return None
    fields = {}
    for value in values:
        name, _, column = value.partition("=")
        if name.strip() not in FIELDS or not column.strip():
            raise ValueError(f"--field {value!r}: use NAME=COLUMN with NAME one of "
                             f"{', '.join(FIELDS)}")
        fields[name.strip()] = column.strip()
    return fields
