"""The history checker of the broker tests: what was published against what was handled.

Every fault test records the ids it published (acknowledged by the broker) and
every handler call, then asks :func:`check` for a :class:`Report`: lost ids,
duplicated ids (handled more than once) and unexpected ids (handled, never
published). A test states what it allows: ``report.assert_clean()`` allows
nothing; ``report.assert_clean(in_flight=ids)`` allows duplicates only among
the ids that were in flight when a process was killed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Report:
    """What a run lost, duplicated or made up."""

    published: int
    handled: int
    lost: frozenset[str]
    duplicated: dict[str, int]
    unexpected: frozenset[str]

    def __str__(self) -> str:
        def few(ids: Iterable[str]) -> str:
            listed = sorted(ids)
            return ", ".join(listed[:5]) + (" ..." if len(listed) > 5 else "")

        return (
            f"published {self.published}, handled {self.handled} times: "
            f"{len(self.lost)} lost [{few(self.lost)}], "
            f"{len(self.duplicated)} duplicated [{few(self.duplicated)}], "
            f"{len(self.unexpected)} unexpected [{few(self.unexpected)}]"
        )

    def assert_clean(self, in_flight: Iterable[str] = ()) -> None:
        """Fail unless nothing was lost or made up, and only *in_flight* ids repeat."""
        allowed = set(in_flight)
        extra = {i: n for i, n in self.duplicated.items() if i not in allowed}
        if self.lost or self.unexpected or extra:
            raise AssertionError(str(self))


def check(published: Iterable[str], handled: Iterable[str]) -> Report:
    """Compare the ids *published* with the ids *handled* (one entry per handling)."""
    sent = set(published)
    counts = Counter(handled)
    return Report(
        published=len(sent),
        handled=sum(counts.values()),
        lost=frozenset(sent - counts.keys()),
        duplicated={i: n for i, n in counts.items() if n > 1},
        unexpected=frozenset(counts.keys() - sent),
    )
