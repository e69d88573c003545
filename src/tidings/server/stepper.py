"""Run an awaitable to its end without a task: the adapter's way to run a store command.

A store command is one coroutine of the :class:`~tidings.store.Store` that awaits at most a
future or two (the store thread's answer). Wrapping each in an :class:`asyncio.Task` costs a task
object, a first step scheduled on the loop and a wake-up per await; :func:`drive` steps the
coroutine at once (so an SQLite command is queued for the group commit before it returns, in the
order of the calls, and an in-memory one is already answered), and resumes it from the future's
done callback, as a task would. ``done(result, None)`` or ``done(None, exc)`` is called exactly
once, possibly before :func:`drive` returns.

Not a general task: no cancellation, no context of its own; the awaitables must only await
asyncio futures (or yield bare, as ``asyncio.sleep(0)`` does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any

__all__ = ["Done", "drive"]

#: Called once with the result (and ``None``), or with ``None`` and the exception.
Done = Callable[[Any, BaseException | None], None]


def drive(awaitable: Awaitable[Any], done: Done) -> None:
    """Start running ``awaitable`` now; ``done`` gets its outcome (see the module docstring)."""
    _step(awaitable.__await__(), done)


def _step(gen: Generator[Any, None, Any], done: Done) -> None:
    try:
        yielded = gen.send(None)
    except StopIteration as stop:
        result, failure = stop.value, None
    except BaseException as exc:  # the command failed (or was cancelled): its caller decides
        result, failure = None, exc
    else:
        if yielded is None:  # a bare yield: go on in the next iteration of the loop
            asyncio.get_running_loop().call_soon(_step, gen, done)
            return
        # An asyncio future: Future.__await__ yields it with _asyncio_future_blocking set; the
        # awaiter (a task, here us) clears it and resumes the coroutine once the future is done.
        yielded._asyncio_future_blocking = False
        yielded.add_done_callback(lambda _: _step(gen, done))
        return
    done(result, failure)  # outside the handler: nothing it raises is chained to StopIteration
