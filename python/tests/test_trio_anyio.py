# SPDX-License-Identifier: MIT
"""wait(), cancellable_wait() and ``async with token:`` under trio and
under anyio (both of its backends), through their own primitives: the
same methods as under asyncio, dispatched on the library that runs.  Needs
Debian's python3-trio and python3-anyio (skipped, and said so, on an
interpreter without them)."""

import threading

import pytest

from cancel_token import CancelToken, OperationCancelled, _core

trio = pytest.importorskip('trio')
anyio = pytest.importorskip('anyio')

LONG = 60  # seconds: only a bound on a hang


def test_trio_wait_woken_by_task():
    token = CancelToken('t')
    seen = []

    async def main():
        async with trio.open_nursery() as nursery:
            async def waiter():
                await token.wait()
                seen.append(token.triggered_token.name)
            nursery.start_soon(waiter)
            nursery.start_soon(waiter)
            await trio.sleep(0)
            token.trigger()
    trio.run(main)
    assert seen == ['t', 't']


def test_trio_wait_woken_by_c_thread_and_python_thread():
    for how in ('c', 'py'):
        token = CancelToken(how)

        async def main():
            with trio.fail_after(LONG):
                if how == 'c':
                    _core._trigger_from_c_thread(token)
                else:
                    threading.Thread(target=token.trigger).start()
                await token.wait()
        trio.run(main)
        assert token.triggered


def test_trio_wait_cancelled_leaves_no_registration():
    token = CancelToken('t')

    async def main():
        with trio.move_on_after(0.01):
            await token.wait()
    trio.run(main)
    assert not token.triggered
    token.trigger()  # no callback left to run into a finished trio run


def test_trio_cancellable_wait():
    token = CancelToken('t')

    async def value():
        return 42

    async def fail():
        raise KeyError('k')

    async def forever():
        await trio.sleep_forever()

    async def main():
        assert await token.cancellable_wait(value(), forever()) == 42
        with pytest.raises(KeyError):
            await token.cancellable_wait(forever(), fail())
        with pytest.raises(TimeoutError):
            await token.cancellable_wait(forever(), timeout=0.01)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, token.trigger)
            with pytest.raises(OperationCancelled,
                               match='^Cancellation requested by t token$'):
                await token.cancellable_wait(forever())
        with pytest.raises(OperationCancelled):  # triggered already
            await token.cancellable_wait(value())
    trio.run(main)


def test_trio_scope_nested_and_from_thread():
    outer, inner = CancelToken('outer'), CancelToken('inner')
    after = []

    async def main():
        with trio.fail_after(LONG):
            with pytest.raises(OperationCancelled, match='by outer token'):
                async with outer:
                    async with inner:
                        threading.Thread(target=outer.trigger).start()
                        await trio.sleep_forever()
            other_outer, other_inner = CancelToken('o2'), CancelToken('i2')
            async with other_outer:
                with pytest.raises(OperationCancelled, match='by i2 token'):
                    async with other_inner:
                        _core._trigger_from_c_thread(other_inner)
                        await trio.sleep_forever()
                await trio.sleep(0)
                after.append(True)
    trio.run(main)
    assert after == [True]
    assert not inner.triggered


@pytest.mark.parametrize('backend', ['asyncio', 'trio'])
def test_anyio_wait_cancellable_wait_scope(backend):
    token = CancelToken('a')
    events = []

    async def forever():
        await anyio.sleep_forever()

    async def main():
        with anyio.fail_after(LONG):
            async with anyio.create_task_group() as tg:
                async def waiter():
                    await token.wait()
                    events.append('woken')
                tg.start_soon(waiter)
                await anyio.sleep(0)
                threading.Thread(target=token.trigger).start()
            with pytest.raises(OperationCancelled):
                await token.cancellable_wait(forever())
            with pytest.raises(OperationCancelled, match='by a token'):
                async with token:
                    pass
            outer, inner = CancelToken('outer'), CancelToken('inner')
            with pytest.raises(OperationCancelled, match='by outer token'):
                async with outer:
                    async with inner:
                        _core._trigger_from_c_thread(outer)
                        await anyio.sleep_forever()
    anyio.run(main, backend=backend)
    assert events == ['woken']
