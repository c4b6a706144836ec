# SPDX-License-Identifier: MIT
"""CancelToken: a libcanceltoken token (cancel_token._core) adapted to asyncio.

Everything about the token itself -- triggering, chaining, which token
fired, the message of OperationCancelled -- is done by the C core.  This
module adds waiting: the coroutines wait() and cancellable_wait(), and the
token as an asynchronous context manager (``async with token:``), under
asyncio; under trio (and anyio on either backend) the same three calls go
to cancel_token._trio.

Design notes:

- Wake-up.  A waiting coroutine never polls.  All the waiters of one token
  in one event loop share one _LoopWaiters: one future per waiter, and one
  core callback registration for them all (CoreToken._on_trigger).  The
  core runs that callback in the thread that triggers the token -- or any
  token it is chained to: chaining is the core's business, so a chain costs
  the waiters nothing.  Then (see _core.c, "Trigger callbacks into
  Python"):
    * in a thread holding the GIL on this loop's thread (Python code calling
      trigger(), the usual case), the futures are resolved at once;
    * in a thread holding the GIL elsewhere, loop.call_soon_threadsafe()
      carries the wake-up over;
    * in a thread without the GIL (C code: the net client's thread, the
      core's deadline or signal thread, any C thread), the core hands the
      registration to this loop's _core.Notifier without taking the GIL;
      its eventfd, watched with loop.add_reader (one reader per loop,
      whatever the number of tokens), wakes the loop, which then resolves
      the futures on its own thread.
  A loop that cannot watch a descriptor, or a process out of descriptors,
  gets no Notifier: foreign threads then take the GIL and use
  call_soon_threadsafe().
- Cleanup.  A waiter that leaves (cancelled) removes its future; the last
  one to leave closes the registration.  So an abandoned wait leaves no
  callback and no task behind.
- Which library.  A coroutine of ours first asks for the running asyncio
  loop of this thread (one C call); with none, it is running under trio
  (directly, or as anyio's trio backend), and _trio does the waiting with
  trio's own primitives.  anyio on asyncio is plain asyncio here.
- cancellable_wait() decides as the reference v0.2.0 does: if the token is
  triggered, an awaitable that had finished with an exception raises that
  exception (the first such in argument order, where v0.2.0 takes them in
  set order), and otherwise OperationCancelled is raised even if an
  awaitable had finished with a value; if it is not triggered, the result
  (value or exception) of the first finished awaitable in argument order.
- Scopes.  ``async with token:`` cancels the task running the block when
  the token is triggered (Task.cancel, as asyncio.timeout() does) and turns
  that cancellation into OperationCancelled on the way out.  On 3.11+ it
  counts cancellations with Task.uncancel(), so that nested scopes and an
  outside cancel() are told apart; on 3.9 and 3.10, which lack it, a
  cancel() from outside that arrives while the scope's own is pending is
  reported as OperationCancelled.
- Threads.  A _LoopWaiters is touched only on its loop's thread.  The
  per-token map from loop to _LoopWaiters is created by C in one step
  (CoreToken._waiter_map), so threads with different loops cannot race.
"""

import asyncio
import builtins
import inspect
import sys
import weakref

from . import _core
from ._core import EventLoopMismatch, OperationCancelled

__all__ = ["CancelToken"]

if sys.version_info >= (3, 11):
    _TimeoutError = builtins.TimeoutError  # asyncio's is the same class
else:
    class _TimeoutError(asyncio.TimeoutError, builtins.TimeoutError):
        """What cancellable_wait() raises on its timeout before 3.11: both
        asyncio.TimeoutError (v0.2.0 raises it) and the built-in
        TimeoutError (the cross-process branch raises that), so that code
        written for either catches it."""
    _TimeoutError.__name__ = _TimeoutError.__qualname__ = "TimeoutError"

# Tests set this to False to exercise the path without a Notifier.
_USE_NOTIFIER = True

# loop -> _LoopNotifier, or None when the loop cannot have one.
_notifiers = weakref.WeakKeyDictionary()


class _LoopNotifier:
    """One loop's _core.Notifier and the reader that drains it."""

    __slots__ = ("core", "__weakref__")

    def __init__(self, loop):
        self.core = _core.Notifier()  # OSError when out of descriptors
        try:
            loop.add_reader(self.core.fileno(), self._drain)
        except BaseException:
            self.core = None
            raise

    def _drain(self):
        for fn in self.core.drain():
            fn()


def _notifier_for(loop):
    """The loop's _core.Notifier, made on first use; None if it cannot
    have one."""
    try:
        ln = _notifiers[loop]
    except KeyError:
        ln = None
        if _USE_NOTIFIER:
            try:
                ln = _LoopNotifier(loop)
            except (OSError, NotImplementedError):
                ln = None
        _notifiers[loop] = ln
    return ln.core if ln is not None else None


def _call_soon_threadsafe(loop, fn):
    """Hand fn to loop from another thread.  A loop closed meanwhile has
    nobody left to wake."""
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:
        pass


class _LoopWaiters:
    """The waiters of one token in one event loop, and their registration."""

    __slots__ = ("token", "loop", "futures", "registration")

    def __init__(self, token, loop):
        self.token = token
        self.loop = loop
        # Used as an insertion-ordered set: waiters resume in arrival order.
        self.futures = {}
        self.registration = None

    def start(self):
        """Register with the core.  If the token is triggered already, the
        callback runs now, in this call: so the caller must have published
        this record and added its first future before."""
        self.registration = self.token._on_trigger(
            self._triggered, _notifier_for(self.loop))

    def _triggered(self):
        """The core callback: runs holding the GIL, on some thread."""
        if asyncio._get_running_loop() is self.loop:
            self.fire()
        else:
            _call_soon_threadsafe(self.loop, self.fire)

    def add(self):
        """A new future, resolved when the token is triggered."""
        fut = self.loop.create_future()
        self.futures[fut] = None
        return fut

    def discard(self, fut):
        """Forget a waiter that left; the last one out closes the record."""
        self.futures.pop(fut, None)
        if not self.futures:
            self.close()

    def close(self):
        """Close the registration and forget this record.  Idempotent."""
        waiters = self.token._waiter_map()
        if waiters.get(self.loop) is self:
            del waiters[self.loop]
        registration, self.registration = self.registration, None
        if registration is not None:
            registration.close()

    def fire(self):
        """The token is triggered: wake every waiter, once."""
        self.close()
        futures, self.futures = self.futures, {}
        for fut in futures:
            if not fut.done():
                fut.set_result(None)


def _mismatch(token, bound, loop):
    return EventLoopMismatch(
        f"{token!r} is bound to the event loop {bound!r}, not to the "
        f"running loop {loop!r}")


def _loop_for(token):
    """The running loop, checked against the loop the token is bound to."""
    loop = asyncio.get_running_loop()
    bound = token._bound_loop
    if bound is not None and bound is not loop:
        raise _mismatch(token, bound, loop)
    return loop


def _trio():
    """cancel_token._trio, for a coroutine running under no asyncio loop;
    RuntimeError, as asyncio's own, if trio is not there either."""
    try:
        from . import _trio
    except ImportError:
        raise RuntimeError(
            "no running event loop (neither asyncio's, nor trio's: trio "
            "is not installed)") from None
    return _trio


def _watch(token, loop):
    """A future resolved when token is triggered, and the record it is in."""
    waiters = token._waiter_map()
    record = waiters.get(loop)
    if record is not None:
        return record.add(), record
    record = waiters[loop] = _LoopWaiters(token, loop)
    fut = record.add()
    record.start()
    return fut, record


async def _cancel_and_wait(futures):
    """Cancel the futures not done yet and wait until they have finished.

    As in the reference, an exception other than cancellation that one of
    them raises on its way out is raised here.  Cancellation of the caller
    itself is not swallowed.
    """
    pending = [f for f in futures if not f.done()]
    if not pending:
        return
    for f in pending:
        f.cancel()
    await asyncio.wait(pending)
    error = None
    for f in pending:
        if not f.cancelled() and f.exception() is not None and error is None:
            error = f.exception()
    if error is not None:
        raise error


def _outcome(token, finished, done):
    """What cancellable_wait() returns or raises once nothing is pending:
    finished are the futures that had finished before the others were
    cancelled, in argument order; done is asyncio.wait's set, or None if
    the token was triggered before anything was awaited."""
    if done is not None and not done:
        raise _TimeoutError()
    if token.triggered:
        error = None
        for f in finished:  # retrieve every exception: none is logged
            e = f.exception()
            if e is not None and error is None:
                error = e
        if error is not None:
            raise error
        raise OperationCancelled(token._cancel_message())
    for f in finished:  # the first, in argument order, that finished
        if f in done:
            return f.result()
    raise AssertionError("unreachable: asyncio.wait returned no future")


class _Scope:
    """``async with token:`` under asyncio (see the design notes)."""

    __slots__ = ("token", "loop", "task", "registration", "cancelling")

    def __init__(self, token):
        self.token = token
        self.cancelling = False
        self.registration = None

    async def __aenter__(self):
        token = self.token
        self.loop = _loop_for(token)
        token.raise_if_triggered()
        self.task = asyncio.current_task()
        if self.task is None:
            raise RuntimeError("async with token: needs a task")
        self.registration = token._on_trigger(
            self._triggered, _notifier_for(self.loop))
        return token

    def _triggered(self):
        if asyncio._get_running_loop() is self.loop:
            self._cancel()
        else:
            _call_soon_threadsafe(self.loop, self._cancel)

    def _cancel(self):
        if self.registration is not None and not self.cancelling:
            self.cancelling = True
            self.task.cancel(self.token._cancel_message())

    async def __aexit__(self, exc_type, exc, tb):
        registration, self.registration = self.registration, None
        if registration is not None:
            registration.close()
        if not self.cancelling:
            return False
        uncancel = getattr(self.task, "uncancel", None)
        mine = uncancel() == 0 if uncancel is not None else True
        if mine and exc_type is not None and \
                issubclass(exc_type, asyncio.CancelledError):
            raise OperationCancelled(self.token._cancel_message()) from exc
        return False


def _task_key():
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no asyncio loop: trio
        return _trio().current_task()
    if task is None:
        raise RuntimeError("async with token: needs a task")
    return task


class CancelToken(_core.CoreToken):
    """CancelToken(name, loop=None)

    A named token that cancels asynchronous work.  ``trigger()`` triggers it
    and every token chained to it; ``triggered`` tells whether it has been
    triggered; ``wait()`` waits for that.  ``loop`` optionally binds the
    token to one event loop, as in the reference: tokens bound to different
    loops cannot be chained, and a bound token cannot be waited for in
    another loop (EventLoopMismatch).  ``async with token:`` runs a block
    that is cancelled, with OperationCancelled, when the token triggers.

    Instances take attributes, and ``name`` may be set (a str), as in the
    reference; subclasses may define ``__init__`` and ``__new__`` freely.
    """

    __signature__ = inspect.Signature([
        inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("loop", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=None),
    ])

    # The accessors of the original's cross-process branch, which every
    # token has there (a proxy overrides them with round trips).
    def get_name(self):
        """The token's name (the `name` attribute)."""
        return self.name

    def check_triggered(self):
        """Whether the token is triggered: `triggered`, for a local token."""
        return self.triggered

    def get_triggered_token(self):
        """The token that fired (`triggered_token`), or None."""
        return self.triggered_token

    def get_event_loop(self):
        """The loop the token is bound to (`loop`), or None."""
        return self.loop

    async def wait(self):
        """Return once the token is triggered (at once if it already is)."""
        if self.triggered:
            return
        if asyncio._get_running_loop() is None:
            return await _trio().wait(self)
        fut, record = _watch(self, _loop_for(self))
        try:
            await fut
        except BaseException:
            record.discard(fut)
            raise

    async def cancellable_wait(self, *awaitables, timeout=None):
        """Wait for the first of ``awaitables`` to finish and return its result.

        Raises TimeoutError (both ``asyncio.TimeoutError`` and the built-in
        one, on every version) if none has finished after
        ``timeout`` seconds, and ``OperationCancelled`` if the token is
        triggered first.  If the token is triggered and an awaitable has
        finished with an exception, that exception is raised (as the
        reference v0.2.0 does).  Whatever happens -- including the
        cancellation of the caller -- the awaitables still pending are
        cancelled, and waited for, before this returns or raises.
        """
        if asyncio._get_running_loop() is None:
            return await _trio().cancellable_wait(
                self, *awaitables, timeout=timeout)
        loop = _loop_for(self)
        futures = []
        try:
            for aw in awaitables:
                futures.append(asyncio.ensure_future(aw, loop=loop))
        except BaseException:  # not awaitable: undo what was started
            await _cancel_and_wait(futures)
            raise

        done = None  # None: the token was triggered before we waited
        if not self.triggered:
            token_fut, record = _watch(self, loop)
            try:
                done, _ = await asyncio.wait(
                    [*futures, token_fut], timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                # Our caller cancelled us: leave nothing running behind.
                record.discard(token_fut)
                await _cancel_and_wait(futures)
                raise
            record.discard(token_fut)

        finished = [f for f in futures if f.done()]
        await _cancel_and_wait(futures)
        return _outcome(self, finished, done)

    def scope(self):
        """An asynchronous context manager: ``async with token.scope():``
        is ``async with token:``; one object per use."""
        if asyncio._get_running_loop() is None:
            return _trio().Scope(self)
        return _Scope(self)

    async def __aenter__(self):
        scope = self.scope()
        await scope.__aenter__()
        stacks = self.__dict__.setdefault("_scopes", {})
        stacks.setdefault(_task_key(), []).append(scope)
        return self

    async def __aexit__(self, exc_type, exc, tb):
        stacks = self.__dict__["_scopes"]
        key = _task_key()
        stack = stacks[key]
        scope = stack.pop()
        if not stack:
            del stacks[key]
        return await scope.__aexit__(exc_type, exc, tb)


_core._set_token_class(CancelToken)
