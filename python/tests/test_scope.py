# SPDX-License-Identifier: MIT
"""``async with token:`` under asyncio, in the manner of asyncio.timeout():
the block is cancelled when the token triggers and the scope raises
OperationCancelled naming the token.  Nested scopes, triggers from the
loop, from another Python thread and from a C thread."""

import asyncio
import threading

import pytest

from cancel_token import CancelToken, OperationCancelled, _core

LONG = 60  # seconds: only a bound on a hang


async def test_scope_cancels_the_block():
    token = CancelToken('job')
    reached = []
    asyncio.get_running_loop().call_soon(token.trigger)
    with pytest.raises(OperationCancelled,
                       match='^Cancellation requested by job token$') as info:
        async with token:
            await asyncio.sleep(LONG)
            reached.append(True)
    assert reached == []
    assert isinstance(info.value.__cause__, asyncio.CancelledError)


async def test_scope_without_trigger_is_transparent():
    token = CancelToken('job')
    async with token as entered:
        assert entered is token
        await asyncio.sleep(0)
    with pytest.raises(KeyError):
        async with token:
            raise KeyError('inner')
    assert not token._scopes  # nothing left behind
    assert not token._waiter_map()


async def test_scope_on_a_triggered_token_raises_at_once():
    token = CancelToken('done')
    token.trigger()
    ran = []
    with pytest.raises(OperationCancelled, match='by done token'):
        async with token:
            ran.append(1)
    assert ran == []


async def test_scope_names_the_cause_of_a_chain():
    root = CancelToken('root')
    chained = root.chain(CancelToken('leaf'))
    asyncio.get_running_loop().call_soon(root.trigger)
    with pytest.raises(OperationCancelled, match='by root token'):
        async with chained:
            await asyncio.sleep(LONG)


async def test_nested_scopes_outer_fires():
    outer, inner = CancelToken('outer'), CancelToken('inner')
    asyncio.get_running_loop().call_soon(outer.trigger)
    with pytest.raises(OperationCancelled, match='by outer token'):
        async with outer:
            async with inner:
                await asyncio.sleep(LONG)
    assert not inner.triggered


async def test_nested_scopes_inner_fires():
    outer, inner = CancelToken('outer'), CancelToken('inner')
    after = []
    asyncio.get_running_loop().call_soon(inner.trigger)
    async with outer:
        with pytest.raises(OperationCancelled, match='by inner token'):
            async with inner:
                await asyncio.sleep(LONG)
        await asyncio.sleep(0)  # the outer scope is not cancelled
        after.append(True)
    assert after == [True]


async def test_same_token_nested_twice():
    token = CancelToken('t')
    asyncio.get_running_loop().call_soon(token.trigger)
    with pytest.raises(OperationCancelled):
        async with token:
            async with token:
                await asyncio.sleep(LONG)


async def test_scope_trigger_from_another_thread():
    token = CancelToken('thread')
    started = threading.Event()
    thread = threading.Thread(target=lambda: (started.wait(), token.trigger()))
    thread.start()
    try:
        with pytest.raises(OperationCancelled, match='by thread token'):
            async with token:
                started.set()
                await asyncio.sleep(LONG)
    finally:
        thread.join()


async def test_nested_scopes_trigger_from_a_c_thread():
    outer, inner = CancelToken('outer'), CancelToken('inner')
    with pytest.raises(OperationCancelled, match='by outer token'):
        async with outer:
            async with inner:
                _core._trigger_from_c_thread(outer)
                await asyncio.sleep(LONG)


async def test_scopes_in_concurrent_tasks():
    token = CancelToken('shared')
    results = []

    async def worker(i):
        try:
            async with token:
                await asyncio.sleep(LONG)
        except OperationCancelled as e:
            results.append((i, str(e)))
    tasks = [asyncio.ensure_future(worker(i)) for i in range(5)]
    await asyncio.sleep(0)
    token.trigger()
    await asyncio.wait_for(asyncio.gather(*tasks), LONG)
    assert sorted(results) == [
        (i, 'Cancellation requested by shared token') for i in range(5)]


async def test_outside_cancel_is_not_turned_into_operation_cancelled():
    token = CancelToken('t')

    async def body():
        async with token:
            await asyncio.sleep(LONG)
    task = asyncio.ensure_future(body())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not token._waiter_map()


async def test_scope_object():
    token = CancelToken('s')
    asyncio.get_running_loop().call_soon(token.trigger)
    with pytest.raises(OperationCancelled):
        async with token.scope():
            await asyncio.sleep(LONG)
