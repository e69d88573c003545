"""drive(): a store coroutine run to its end without a task, its outcome reported once."""

from __future__ import annotations

import asyncio

import pytest

from tidings.server.stepper import drive


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[tuple[object, BaseException | None]] = []
        self.done = asyncio.Event()

    def __call__(self, result: object, exc: BaseException | None) -> None:
        self.seen.append((result, exc))
        self.done.set()


async def test_a_coroutine_that_never_awaits_is_answered_before_drive_returns() -> None:
    async def answer() -> int:
        return 7

    outcomes = Outcomes()
    drive(answer(), outcomes)
    assert outcomes.seen == [(7, None)]


async def test_a_coroutine_is_started_at_once_and_resumed_by_its_future() -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    order: list[str] = []

    async def queued(name: str) -> str:
        order.append(name)  # "queued for the store": before drive() returns
        return f"{name}:{await future}"

    outcomes = Outcomes()
    drive(queued("a"), outcomes)
    drive(queued("b"), outcomes)
    assert order == ["a", "b"] and outcomes.seen == []
    loop.call_soon(future.set_result, "ok")
    async with asyncio.timeout(5):
        while len(outcomes.seen) < 2:
            outcomes.done.clear()
            await outcomes.done.wait()
    assert outcomes.seen == [("a:ok", None), ("b:ok", None)]


async def test_a_failure_is_reported_not_raised() -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    async def fails_later() -> None:
        await future

    async def fails_at_once() -> None:
        raise KeyError("x")

    outcomes = Outcomes()
    drive(fails_at_once(), outcomes)
    drive(fails_later(), outcomes)
    loop.call_soon(future.set_exception, ValueError("no"))
    async with asyncio.timeout(5):
        while len(outcomes.seen) < 2:
            outcomes.done.clear()
            await outcomes.done.wait()
    (r1, e1), (r2, e2) = outcomes.seen
    assert r1 is None and isinstance(e1, KeyError)
    assert r2 is None and isinstance(e2, ValueError)


async def test_a_bare_yield_goes_on_in_the_next_iteration() -> None:
    async def yields() -> str:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return "after two"

    outcomes = Outcomes()
    drive(yields(), outcomes)
    assert outcomes.seen == []
    async with asyncio.timeout(5):
        await outcomes.done.wait()
    assert outcomes.seen == [("after two", None)]


@pytest.mark.parametrize("n", [1, 50])
async def test_each_outcome_is_reported_once(n: int) -> None:
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(n)]

    async def chain() -> int:
        total = 0
        for f in futures:
            total += await f
        return total

    outcomes = Outcomes()
    drive(chain(), outcomes)
    for i, f in enumerate(futures):
        loop.call_soon(f.set_result, i)
    async with asyncio.timeout(5):
        await outcomes.done.wait()
    await asyncio.sleep(0)
    assert outcomes.seen == [(sum(range(n)), None)]
