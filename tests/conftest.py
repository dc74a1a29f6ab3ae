"""Shared test setup: every async test runs under a timeout (pytest-timeout, see pyproject)."""

from __future__ import annotations
