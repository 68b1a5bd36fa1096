"""An activity that reports progress: every ``yield`` is a heartbeat."""

from __future__ import annotations

from typing import TYPE_CHECKING

from activities import Activity

if TYPE_CHECKING:
    from collections.abc import Generator


class CountWords(Activity):
    """Count the words of some documents, heartbeating after each one."""

    def run(self, documents: list[str]) -> Generator[None, None, dict[str, int]]:
        """Return the number of documents and of words; one heartbeat per document."""
        words = 0
        for document in documents:
            words += len(document.split())
            yield
        return {"documents": len(documents), "words": words}
