"""Event classes shared by the tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Base:
    n: int


@dataclass(frozen=True)
class Child(Base):
    pass


@dataclass(frozen=True)
class GrandChild(Child):
    pass


@dataclass(frozen=True)
class Other:
    n: int
