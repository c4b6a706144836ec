# SPDX-License-Identifier: MIT
"""CancelToken without an event loop: names, triggering, chaining, which
token fired, exceptions, deep chains, threads, and what cannot be done
(pickling, chaining across loops)."""

import asyncio
import copy
import gc
import pickle
import select
import socket
import sys
import threading
import weakref

import pytest

import cancel_token
from cancel_token import (
    BaseCancelTokenException,
    CancelToken,
    EventLoopMismatch,
    OperationCancelled,
)
from cancel_token import _core


def test_repr_str_name():
    token = CancelToken('demo')
    assert repr(token) == '<CancelToken: demo>'
    assert str(token) == 'demo'
    assert token.name == 'demo'
    assert isinstance(token, _core.CoreToken)


def test_name_must_be_str():
    with pytest.raises(TypeError):
        CancelToken(42)
    with pytest.raises(TypeError):
        CancelToken()


@pytest.mark.parametrize('name', [
    '', 'a\0b', '\udcff', 'x' * (_core.NAME_MAX + 1), 'ü' * 40000,
    'plain', 'ünïcödé ✓ 🎉'])
def test_any_str_is_a_name(name):
    # The C core cannot hold some of these exactly; the Python name is
    # still the one given, and chains compose it as the reference does.
    token = CancelToken(name)
    assert token.name == name
    assert str(token) == name
    assert repr(token) == f'<CancelToken: {name}>'
    other = CancelToken('other')
    assert token.chain(other).name == f'{name}:other'
    assert other.chain(token).name == f'other:{name}'
    token.trigger()
    with pytest.raises(OperationCancelled) as info:
        other.chain(token).raise_if_triggered()
    assert str(info.value) == f'Cancellation requested by {name} token'


def test_token_single():
    token = CancelToken('token')
    assert not token.triggered
    assert token.triggered_token is None
    token.trigger()
    assert token.triggered
    assert token.triggered_token is token
    token.trigger()  # a second trigger changes nothing
    assert token.triggered_token is token


def test_trigger_returns_none():
    assert CancelToken('t').trigger() is None


def test_raise_if_triggered():
    token = CancelToken('demo')
    assert token.raise_if_triggered() is None
    token.trigger()
    with pytest.raises(OperationCancelled,
                       match=r'^Cancellation requested by demo token$'):
        token.raise_if_triggered()


def test_exception_hierarchy():
    assert issubclass(BaseCancelTokenException, Exception)
    assert issubclass(OperationCancelled, BaseCancelTokenException)
    assert issubclass(EventLoopMismatch, BaseCancelTokenException)
    assert not issubclass(OperationCancelled, EventLoopMismatch)
    assert OperationCancelled.__module__ == 'cancel_token.exceptions'
    assert cancel_token.OperationCancelled is OperationCancelled


def _three():
    token = CancelToken('token')
    token2 = CancelToken('token2')
    token3 = CancelToken('token3')
    return token, token2, token3, token.chain(token2).chain(token3)


def test_chain_trigger_chain():
    token, token2, token3, chain = _three()
    assert chain.name == 'token:token2:token3'
    assert not chain.triggered
    chain.trigger()
    assert chain.triggered
    assert chain.triggered_token is chain
    assert not token.triggered
    assert not token2.triggered
    assert not token3.triggered


@pytest.mark.parametrize('which', [0, 1, 2])
def test_chain_trigger_parent(which):
    *tokens, chain = _three()
    tokens[which].trigger()
    assert chain.triggered
    assert chain.triggered_token is tokens[which]
    with pytest.raises(OperationCancelled) as info:
        chain.raise_if_triggered()
    assert str(info.value) == \
        f'Cancellation requested by {tokens[which].name} token'


def test_first_trigger_wins():
    a, b = CancelToken('a'), CancelToken('b')
    chain = a.chain(b)
    b.trigger()
    a.trigger()
    assert chain.triggered_token is b


def test_chain_of_triggered_token_is_triggered():
    a = CancelToken('a')
    a.trigger()
    chain = CancelToken('b').chain(a)
    assert chain.triggered
    assert chain.triggered_token is a


def test_chain_with_itself():
    a = CancelToken('a')
    chain = a.chain(a)
    assert chain.name == 'a:a'
    a.trigger()
    assert chain.triggered_token is a


def test_chain_needs_a_token():
    with pytest.raises(TypeError):
        CancelToken('a').chain('b')
    with pytest.raises(TypeError):
        CancelToken('a').chain(None)


def test_chain_returns_a_cancel_token():
    class Mine(CancelToken):
        pass
    chain = Mine('a').chain(Mine('b'))
    assert type(chain) is CancelToken


def test_triggered_token_is_the_same_object_when_others_are_gone():
    a = CancelToken('a')
    ref = weakref.ref(a)
    chain = a.chain(CancelToken('b')).chain(CancelToken('c'))
    a.trigger()
    del a
    gc.collect()
    # The chain keeps its ancestors' objects alive.
    assert chain.triggered_token is ref()
    assert chain.triggered_token.name == 'a'


def test_objects_are_freed():
    a = CancelToken('a')
    chain = a.chain(CancelToken('b'))
    refs = [weakref.ref(a), weakref.ref(chain)]
    del a, chain
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_loop_binding():
    loop = asyncio.new_event_loop()
    try:
        assert CancelToken('a').loop is None
        bound = CancelToken('b', loop=loop)
        assert bound.loop is loop
        assert CancelToken('c', loop=loop).chain(bound).loop is loop
        with pytest.raises(EventLoopMismatch):
            CancelToken('token').chain(bound)
        with pytest.raises(EventLoopMismatch):
            bound.chain(CancelToken('token'))
    finally:
        loop.close()


def test_token_chain_event_loop_mismatch():
    # The reference's own test.
    loop = asyncio.new_event_loop()
    try:
        token = CancelToken('token')
        token2 = CancelToken('token2', loop=loop)
        with pytest.raises(EventLoopMismatch):
            token.chain(token2)
    finally:
        loop.close()


def test_cannot_pickle():
    token = CancelToken('a')
    with pytest.raises(TypeError, match='cannot pickle'):
        pickle.dumps(token)
    with pytest.raises(TypeError):
        copy.copy(token)


def test_subclass_with_new_and_init():
    class Tagged(CancelToken):
        def __new__(cls, name, tag):
            return super().__new__(cls, name)

        def __init__(self, name, tag):
            super().__init__(name)
            self.tag = tag

    t = Tagged('x', tag=7)
    assert t.tag == 7 and t.name == 'x'
    t.trigger()
    assert t.triggered_token is t


DEPTH = 20_000


def _deep_chain(depth):
    root = CancelToken('root')
    tokens = [root]
    token = root
    for i in range(depth):
        token = token.chain(CancelToken(f't{i}'))
        tokens.append(token)
    return root, tokens


def test_deep_chain_beyond_the_recursion_limit():
    assert DEPTH > sys.getrecursionlimit() * 10
    root, tokens = _deep_chain(DEPTH)
    leaf = tokens[-1]
    assert not leaf.triggered
    assert leaf.triggered_token is None
    leaf.raise_if_triggered()
    assert leaf.name.startswith('root:t0:t1:')
    middle = tokens[DEPTH // 2]
    middle.trigger()
    assert leaf.triggered
    assert leaf.triggered_token is middle
    assert not tokens[DEPTH // 2 - 1].triggered
    root.trigger()
    assert leaf.triggered_token is middle  # the first trigger stays the cause
    assert tokens[1].triggered_token is root


def test_deep_chain_is_freed_without_recursion():
    root, tokens = _deep_chain(100_000)
    ref = weakref.ref(tokens[-1])
    del tokens
    gc.collect()
    assert ref() is None
    del root


def test_deep_chain_name_of_own_names():
    # Names the core cannot hold are composed in Python, eagerly; deep
    # chains of them still work.
    token = CancelToken('')
    for _ in range(3000):
        token = token.chain(CancelToken(''))
    assert token.name == ':' * 3000


def test_concurrent_triggers_agree_on_the_cause():
    parents = [CancelToken(f'p{i}') for i in range(8)]
    chain = parents[0]
    for p in parents[1:]:
        chain = chain.chain(p)
    barrier = threading.Barrier(len(parents))

    def go(token):
        barrier.wait()
        token.trigger()
    threads = [threading.Thread(target=go, args=(p,)) for p in parents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cause = chain.triggered_token
    assert cause in parents
    assert chain.triggered_token is cause


def test_trigger_from_c_thread_is_seen():
    token = CancelToken('c')
    _core._trigger_from_c_thread(token)
    # No event loop here: block in a plain wait for the thread to finish.
    done = threading.Event()
    reg = token._on_trigger(done.set)
    try:
        assert done.wait(timeout=60)
    finally:
        reg.close()
    assert token.triggered and token.triggered_token is token


def test_on_trigger_runs_at_once_when_already_triggered():
    token = CancelToken('t')
    token.trigger()
    calls = []
    reg = token._on_trigger(lambda: calls.append(1))
    assert calls == [1]
    reg.close()
    reg.close()


def test_on_trigger_closed_never_runs():
    token = CancelToken('t')
    calls = []
    reg = token._on_trigger(lambda: calls.append(1))
    reg.close()
    token.trigger()
    assert calls == []


def test_on_trigger_runs_once():
    token = CancelToken('t')
    calls = []
    reg = token._on_trigger(lambda: calls.append(1))
    token.trigger()
    token.trigger()
    assert calls == [1]
    reg.close()


def test_descriptor_is_readable_once_triggered():
    token = CancelToken('root').chain(CancelToken('x'))
    fd = token._fileno()
    assert fd == token._fileno()
    assert select.select([fd], [], [], 0)[0] == []
    token.trigger()
    assert select.select([fd], [], [], 0)[0] == [fd]


def test_notifier_hands_over_foreign_triggers():
    notifier = _core.Notifier()
    token = CancelToken('t')
    calls = []
    reg = token._on_trigger(lambda: calls.append('fired'), notifier)
    _core._trigger_from_c_thread(token)
    # The C thread does not take the GIL: it queues the registration and
    # makes the notifier's descriptor readable.
    assert select.select([notifier.fileno()], [], [], 60)[0]
    assert calls == []
    for fn in notifier.drain():
        fn()
    assert calls == ['fired']
    assert notifier.drain() == []
    assert select.select([notifier.fileno()], [], [], 0)[0] == []
    reg.close()


def test_closing_a_queued_registration_forgets_it():
    notifier = _core.Notifier()
    token = CancelToken('t')
    reg = token._on_trigger(lambda: None, notifier)
    _core._trigger_from_c_thread(token)
    assert select.select([notifier.fileno()], [], [], 60)[0]
    reg.close()
    assert notifier.drain() == []


def test_close_racing_a_c_thread_trigger_runs_fn_never_or_once():
    # A C thread's trigger ends the core registration itself (notify.c, "No
    # waiting for the firing thread"); reg.close() on this thread may come
    # before, during or after that.  Whichever wins, once close() has
    # returned the callable is not handed out by drain(), and one that was
    # drained first is handed out exactly once.
    notifier = _core.Notifier()
    handed = closed_first = 0
    for i in range(2000):
        token = CancelToken('t%d' % i)
        reg = token._on_trigger(lambda: None, notifier)
        _core._trigger_from_c_thread(token)
        if i % 2:
            reg.close()  # at once: races the C thread
            closed_first += 1
            # The trigger still happens (in the C thread); only fn is dropped.
            while not token.triggered:
                select.select([], [], [], 0.0001)
            fns = notifier.drain()
            assert fns == []
        else:
            fns = []
            while not fns:
                assert select.select([notifier.fileno()], [], [], 60)[0]
                fns = notifier.drain()
            assert len(fns) == 1
            handed += 1
            reg.close()
            assert notifier.drain() == []
        assert not reg.active
    assert (handed, closed_first) == (1000, 1000)


def test_notifier_freed_right_after_a_c_thread_fired():
    # The C thread may still be writing the descriptor when the loop side
    # has drained and closed the registration and drops the Notifier:
    # dealloc waits for that write (notify.c, `writers`), so the descriptor
    # is not closed under it (a recycled descriptor would get the write).
    for i in range(300):
        notifier = _core.Notifier()
        token = CancelToken('t%d' % i)
        reg = token._on_trigger(lambda: None, notifier)
        _core._trigger_from_c_thread(token)
        assert select.select([notifier.fileno()], [], [], 60)[0]
        assert len(notifier.drain()) == 1
        reg.close()
        del reg, notifier
        gc.collect()
        # A fresh socket pair's first end takes the lowest free number,
        # usually the freed descriptor's: a late write into it would show
        # as data at the other end.
        a, b = socket.socketpair()
        try:
            assert select.select([b], [], [], 0)[0] == []
        finally:
            a.close()
            b.close()
