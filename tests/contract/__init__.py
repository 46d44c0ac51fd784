"""The property-tested contract: docs/CONTRACT.md maps each promise to its tests."""
