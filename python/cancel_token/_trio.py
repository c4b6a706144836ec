# SPDX-License-Identifier: MIT
"""Waiting on tokens under trio, and under anyio's trio backend: what
CancelToken.wait(), cancellable_wait() and ``async with token:`` do when no
asyncio loop runs in the thread.  Imported on first use only, so asyncio
users never import trio.

Design notes:

- Wake-up without polling.  A waiter registers a core callback
  (CoreToken._on_trigger, without a Notifier) that hands ``Event.set`` or
  ``CancelScope.cancel`` to the trio run with TrioToken.run_sync_soon(),
  trio's one thread-safe entry point.  The callback runs in the triggering
  thread: at once in a thread holding the GIL (a trio task calling
  trigger(), another Python thread), or, in a C thread (the net client's,
  a deadline), after taking the GIL -- trio has no equivalent of the
  asyncio path's per-loop Notifier here.  The registration is closed when
  the waiter leaves, however it leaves.
- cancellable_wait(token, *awaitables, timeout=None) runs each awaitable
  (a coroutine: trio has no futures) in a task of its own nursery and a
  watcher of the token in another; the first to finish cancels the rest.
  The outcome follows the asyncio version's rule (the reference v0.2.0's):
  the token triggered -> an awaitable's exception if one finished with
  one, else OperationCancelled; else the outcome of the finished awaitable
  that comes first in argument order; no winner by the timeout ->
  TimeoutError (the same class as under asyncio).
- Scopes.  Scope wraps a trio.CancelScope that the token's trigger
  cancels; on the way out, a cancellation the scope caught because the
  token fired becomes OperationCancelled.  trio's own scoping makes
  nesting exact: each scope catches only its own cancellation.
"""

import math

import trio

from ._core import OperationCancelled
from .token import _TimeoutError

__all__ = ["wait", "cancellable_wait", "Scope", "current_task"]

current_task = trio.lowlevel.current_task


def _on_trigger(token, fn):
    """Register fn to run on this trio run's thread when token triggers."""
    trio_token = trio.lowlevel.current_trio_token()

    def fire():  # GIL held, any thread
        try:
            trio_token.run_sync_soon(fn)
        except trio.RunFinishedError:
            pass  # the run is over: nobody is left to wake
    return token._on_trigger(fire)


async def wait(token):
    """Return once token is triggered."""
    if token.triggered:
        await trio.lowlevel.checkpoint()
        return
    event = trio.Event()
    registration = _on_trigger(token, event.set)
    try:
        await event.wait()
    finally:
        registration.close()


def _close(aw):
    close = getattr(aw, "close", None)  # a coroutine never started
    if close is not None:
        close()


async def cancellable_wait(token, *awaitables, timeout=None):
    """The first of awaitables to finish, its value or its exception;
    OperationCancelled if token triggers first (see the design notes)."""
    if token.triggered:
        for aw in awaitables:
            _close(aw)
        await trio.lowlevel.checkpoint()
        raise OperationCancelled(token._cancel_message())
    finished = {}  # index -> (ok, value or exception)

    async def run(i, aw, cancel_scope):
        try:
            value = await aw
        except Exception as e:  # noqa: BLE001: the awaitable's outcome
            finished[i] = (False, e)
        else:
            finished[i] = (True, value)
        cancel_scope.cancel()

    async def watch(cancel_scope):
        await wait(token)
        cancel_scope.cancel()

    deadline = math.inf if timeout is None else trio.current_time() + timeout
    with trio.move_on_at(deadline):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            for i, aw in enumerate(awaitables):
                nursery.start_soon(run, i, aw, nursery.cancel_scope)
    order = sorted(finished)
    if token.triggered:
        for i in order:
            ok, value = finished[i]
            if not ok:
                raise value
        raise OperationCancelled(token._cancel_message())
    if not order:
        raise _TimeoutError()
    ok, value = finished[order[0]]
    if ok:
        return value
    raise value


class Scope:
    """``async with token:`` under trio."""

    def __init__(self, token):
        self.token = token
        self.cancel_scope = None
        self.registration = None

    async def __aenter__(self):
        self.token.raise_if_triggered()
        self.cancel_scope = trio.CancelScope()
        self.cancel_scope.__enter__()
        self.registration = _on_trigger(self.token, self.cancel_scope.cancel)
        return self.token

    async def __aexit__(self, exc_type, exc, tb):
        registration, self.registration = self.registration, None
        registration.close()
        handled = self.cancel_scope.__exit__(exc_type, exc, tb)
        if self.cancel_scope.cancelled_caught and self.token.triggered:
            raise OperationCancelled(self.token._cancel_message()) from exc
        return handled
