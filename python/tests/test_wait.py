# SPDX-License-Identifier: MIT
"""wait() and cancellable_wait(): wake-ups from the loop's thread, other
Python threads and C threads, with the loop's Notifier and without one;
one registration, no extra task per waiter and one reader per loop;
cleanup on cancellation; deep chains; the reference's own tests of these
coroutines."""

import asyncio
import functools
import os
import resource
import threading

import pytest

from cancel_token import CancelToken, EventLoopMismatch, OperationCancelled
from cancel_token import _core
from cancel_token import token as token_module


@pytest.fixture(params=['notifier', 'gil'])
def wake_path(request, monkeypatch):
    """Run a test with each way token.py reaches a loop from a thread
    without the GIL: the loop's Notifier, or taking the GIL."""
    monkeypatch.setattr(token_module, '_USE_NOTIFIER',
                        request.param == 'notifier')
    return request.param


def _readers(loop):
    """The descriptors the loop watches (selector loops only)."""
    return len(loop._selector.get_map())


async def assert_only_current_task_not_done():
    # Unlike the reference we do not sleep first: everything we cancel has
    # finished by the time our coroutines return.
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            assert not task.done()
        else:
            assert task.done(), task


def assert_no_waiters(token):
    assert token._waiter_map() == {}


# -- the reference's tests, in our setting ---------------------------------

async def test_token_wait(wake_path):
    token = CancelToken('token')
    asyncio.get_running_loop().call_soon(token.trigger)
    done, pending = await asyncio.wait(
        [asyncio.ensure_future(token.wait())], timeout=30)
    assert len(done) == 1
    assert len(pending) == 0
    assert token.triggered
    assert_no_waiters(token)


async def test_wait_cancel_pending_tasks_on_completion(wake_path):
    token = CancelToken('token')
    token2 = CancelToken('token2')
    chain = token.chain(token2)
    asyncio.get_running_loop().call_soon(token2.trigger)
    await chain.wait()
    await assert_only_current_task_not_done()
    assert_no_waiters(chain)


async def test_wait_cancel_pending_tasks_on_cancellation(wake_path):
    token = CancelToken('token').chain(CancelToken('token2')).chain(
        CancelToken('token3'))
    task = asyncio.ensure_future(token.wait())
    done, pending = await asyncio.wait([task], timeout=0.01)
    assert (done, pending) == (set(), {task})
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_only_current_task_not_done()
    assert_no_waiters(token)


async def test_cancellable_wait(wake_path):
    fut = asyncio.Future()
    asyncio.get_running_loop().call_soon(
        functools.partial(fut.set_result, 'result'))
    result = await CancelToken('token').cancellable_wait(fut, timeout=30)
    assert result == 'result'
    await assert_only_current_task_not_done()


async def test_cancellable_wait_future_exception(wake_path):
    fut = asyncio.Future()
    asyncio.get_running_loop().call_soon(
        functools.partial(fut.set_exception, KeyError('boom')))
    with pytest.raises(KeyError):
        await CancelToken('token').cancellable_wait(fut, timeout=30)
    await assert_only_current_task_not_done()


async def test_cancellable_wait_cancels_subtasks_when_cancelled(wake_path):
    token = CancelToken('')
    future = asyncio.ensure_future(token.cancellable_wait(asyncio.sleep(30)))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(future, timeout=0.01)
    assert future.cancelled()
    await assert_only_current_task_not_done()
    assert_no_waiters(token)


async def test_cancellable_wait_timeout(wake_path):
    token = CancelToken('token')
    with pytest.raises(asyncio.TimeoutError):
        await token.cancellable_wait(asyncio.sleep(30), timeout=0.01)
    await assert_only_current_task_not_done()
    assert_no_waiters(token)


async def test_cancellable_wait_operation_cancelled(wake_path):
    token = CancelToken('token')
    token.trigger()
    with pytest.raises(OperationCancelled,
                       match='^Cancellation requested by token token$'):
        await token.cancellable_wait(asyncio.sleep(30))
    await assert_only_current_task_not_done()


# -- cancellable_wait, more -------------------------------------------------

async def test_cancellable_wait_triggered_while_waiting(wake_path):
    parent = CancelToken('parent')
    token = CancelToken('token').chain(parent)
    started = asyncio.Event()

    async def slow():
        started.set()
        await asyncio.sleep(30)
    task = asyncio.ensure_future(token.cancellable_wait(slow()))
    await started.wait()
    threading.Thread(target=parent.trigger).start()
    with pytest.raises(OperationCancelled,
                       match='^Cancellation requested by parent token$'):
        await task
    await assert_only_current_task_not_done()
    assert_no_waiters(token)


async def test_cancellable_wait_returns_the_first_result():
    gate = asyncio.Event()

    async def fast():
        return 'fast'

    async def slow():
        await gate.wait()
        return 'slow'
    token = CancelToken('t')
    assert await token.cancellable_wait(slow(), fast()) == 'fast'
    await assert_only_current_task_not_done()


async def test_cancellable_wait_without_awaitables():
    token = CancelToken('t')
    with pytest.raises(asyncio.TimeoutError):
        await token.cancellable_wait(timeout=0)
    asyncio.get_running_loop().call_soon(token.trigger)
    with pytest.raises(OperationCancelled):
        await token.cancellable_wait()


async def test_cancellable_wait_triggered_first_never_starts_awaitables():
    token = CancelToken('t')
    token.trigger()
    started = []

    async def work():
        started.append(1)
    with pytest.raises(OperationCancelled):
        await token.cancellable_wait(work(), work())
    assert started == []
    await assert_only_current_task_not_done()


async def test_cancellable_wait_bad_awaitable_leaves_nothing_behind():
    token = CancelToken('t')
    with pytest.raises(TypeError):
        await token.cancellable_wait(asyncio.sleep(30), 42)
    await assert_only_current_task_not_done()


async def test_cancellable_wait_timeout_error_is_builtin():
    # Python 3.11: asyncio.TimeoutError is TimeoutError, as the docs show.
    with pytest.raises(TimeoutError):
        await CancelToken('t').cancellable_wait(asyncio.sleep(30), timeout=0)


# -- wake-ups -----------------------------------------------------------------

async def test_wait_returns_at_once_when_triggered():
    token = CancelToken('t')
    token.trigger()
    await token.wait()
    assert_no_waiters(token)


async def test_trigger_from_another_thread_wakes_the_loop(wake_path):
    token = CancelToken('t')
    task = asyncio.ensure_future(token.wait())
    await asyncio.sleep(0)  # the task is parked in wait()
    threading.Thread(target=token.trigger).start()
    await asyncio.wait_for(task, 60)
    assert_no_waiters(token)


async def test_trigger_from_c_thread_wakes_the_loop(wake_path):
    parent = CancelToken('parent')
    token = CancelToken('t').chain(parent)
    task = asyncio.ensure_future(token.wait())
    await asyncio.sleep(0)
    _core._trigger_from_c_thread(parent)
    await asyncio.wait_for(task, 60)
    assert token.triggered_token is parent
    assert_no_waiters(token)


async def test_thousand_waiters_one_registration_no_extra_tasks(wake_path):
    loop = asyncio.get_running_loop()
    root = CancelToken('root')
    token = root
    for i in range(10):
        token = token.chain(CancelToken(f'link{i}'))
    before = _readers(loop)
    tasks = [asyncio.ensure_future(token.wait()) for _ in range(1000)]
    await asyncio.sleep(0)
    # One task per waiter -- ours -- and nothing per chain link.
    assert len(asyncio.all_tasks()) == 1001
    records = token._waiter_map()
    assert list(records) == [loop]
    assert len(records[loop].futures) == 1000
    registration = records[loop].registration
    assert registration.active
    # At most one reader per loop, whatever the number of tokens.
    per_loop = 1 if wake_path == 'notifier' else 0
    assert _readers(loop) == before + per_loop
    other = [asyncio.ensure_future(CancelToken(f'o{i}').wait())
             for i in range(100)]
    await asyncio.sleep(0)
    assert _readers(loop) == before + per_loop
    threading.Thread(target=root.trigger).start()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert not registration.active
    assert_no_waiters(token)
    for t in other:
        t.cancel()
    await asyncio.wait(other)


async def test_cancelled_waiters_close_the_registration(wake_path):
    loop = asyncio.get_running_loop()
    token = CancelToken('t')
    tasks = [asyncio.ensure_future(token.wait()) for _ in range(10)]
    await asyncio.sleep(0)
    registration = token._waiter_map()[loop].registration
    for t in tasks[:9]:
        t.cancel()
    await asyncio.wait(tasks[:9])
    assert len(token._waiter_map()[loop].futures) == 1
    assert registration.active
    tasks[9].cancel()
    await asyncio.wait(tasks[9:])
    assert not registration.active
    assert_no_waiters(token)
    # And the token can be waited on again.
    task = asyncio.ensure_future(token.wait())
    await asyncio.sleep(0)
    token.trigger()
    await asyncio.wait_for(task, 60)


async def test_trigger_on_the_loop_thread_resolves_at_once():
    token = CancelToken('root').chain(CancelToken('x'))
    fut, record = token_module._watch(token, asyncio.get_running_loop())
    token.trigger()
    # No loop iteration, no system call: the future is already done.
    assert fut.done()
    assert_no_waiters(token)


async def test_deep_chain_wait(wake_path):
    root = CancelToken('root')
    token = root
    links = []
    for i in range(20_000):
        token = token.chain(CancelToken(f't{i}'))
        links.append(token)
    task = asyncio.ensure_future(token.wait())
    middle = asyncio.ensure_future(links[10_000].wait())
    await asyncio.sleep(0)
    threading.Thread(target=root.trigger).start()
    await asyncio.wait_for(asyncio.gather(task, middle), 60)
    assert token.triggered_token is root


async def test_wait_in_two_loops_at_once(wake_path):
    token = CancelToken('shared')
    parked = threading.Barrier(2)
    results = []

    def other_thread():
        async def main():
            task = asyncio.ensure_future(token.wait())
            await asyncio.sleep(0)
            parked.wait()
            await asyncio.wait_for(task, 60)
            results.append('other')
        asyncio.run(main())
    th = threading.Thread(target=other_thread)
    th.start()
    task = asyncio.ensure_future(token.wait())
    await asyncio.sleep(0)
    await asyncio.get_running_loop().run_in_executor(None, parked.wait)
    token.trigger()
    await asyncio.wait_for(task, 60)
    await asyncio.get_running_loop().run_in_executor(None, th.join)
    assert results == ['other']


async def test_wait_bound_to_another_loop():
    other = asyncio.new_event_loop()
    try:
        token = CancelToken('t', loop=other)
        with pytest.raises(EventLoopMismatch):
            await token.wait()
        with pytest.raises(EventLoopMismatch):
            await token.cancellable_wait(timeout=0)
    finally:
        other.close()


async def test_wait_bound_to_this_loop():
    token = CancelToken('t', loop=asyncio.get_running_loop())
    asyncio.get_running_loop().call_soon(token.trigger)
    await token.wait()


async def test_out_of_descriptors_falls_back_to_the_gil():
    loop = asyncio.get_running_loop()
    token = CancelToken('t')
    other = CancelToken('u')
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    probe = os.dup(0)  # the lowest free descriptor
    os.close(probe)
    resource.setrlimit(resource.RLIMIT_NOFILE, (probe, hard))
    try:
        with pytest.raises(OSError):
            _core.Notifier()
        task = asyncio.ensure_future(token.wait())
        task2 = asyncio.ensure_future(other.wait())
        await asyncio.sleep(0)
        assert token_module._notifiers[loop] is None
        assert token._waiter_map()[loop].registration.active
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    threading.Thread(target=token.trigger).start()
    _core._trigger_from_c_thread(other)
    await asyncio.wait_for(asyncio.gather(task, task2), 60)
    assert_no_waiters(token)
    assert_no_waiters(other)


def test_wait_needs_a_running_loop():
    coro = CancelToken('t').wait()
    with pytest.raises(RuntimeError):
        coro.send(None)
    coro.close()
