"""Fixtures of the simulator's tests: the test keys and a simulator beside a fake hub."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.simulator import Simulator
from tests.simulator.fake_hub import FakeHub


@pytest.fixture(scope="session")
def hub_key(test_key):
    return test_key("test-hub-receipt-1")


@pytest.fixture
def fake_hub(trust, hub_key, schemas) -> Callable[[], FakeHub]:
    return lambda: FakeHub(trust, hub_key, schemas)


@pytest.fixture
def running_simulator(test_key, tmp_path) -> Callable[..., contextlib.AbstractAsyncContextManager[Simulator]]:
    """`async with running_simulator(hub_url, ...)`: a started simulator (HK, push, state in tmp_path unless given)."""

    @contextlib.asynccontextmanager
    async def run(hub_url: str, **options: Any) -> AsyncIterator[Simulator]:
        jurisdiction = options.pop("jurisdiction", "HK")
        kid = {"HK": "test-hk-message-1", "MO": "test-mo-message-1", "CN-GD": "test-cn-gd-message-1"}[jurisdiction]
        options.setdefault("mode", "push")
        options.setdefault("state_dir", Path(tmp_path) / "state")
        simulator = Simulator(jurisdiction=jurisdiction, key=test_key(kid), hub_url=hub_url, **options)
        await simulator.start()
        try:
            yield simulator
        finally:
            await simulator.stop()

    return run


async def push(simulator: Simulator, delivery: bytes) -> tuple[int, str, bytes]:
    """POST one delivery to the simulator's push endpoint: (status, content type, body)."""
    async with aiohttp.ClientSession() as session:
        async with session.post(simulator.endpoint_url, data=delivery, headers={"Content-Type": "application/json"}) as response:
            return response.status, response.headers.get("Content-Type", ""), await response.read()
