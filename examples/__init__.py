"""Runnable examples (``python examples/NAME.py``; the web apps: see each module)."""
