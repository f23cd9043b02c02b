"""Fixtures for the tidegate_mux tests: plain asyncio (no pytest-asyncio),
the test playing the gateway (mux_peer), example apps as subprocesses
(mux_apps)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mux_apps import ExampleApp, start_echo  # noqa: E402


@pytest.fixture
def echo_app() -> ExampleApp:
    with start_echo() as app:
        yield app
