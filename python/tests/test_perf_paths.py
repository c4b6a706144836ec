# SPDX-License-Identifier: MIT
"""Which token fired, through the lazy C token -> Python object mapping.

token.c registers a token's Python object with its C token only when the
token is first chained from (or, for C-made wrappers and proxies, at
once): a token nothing is chained to needs no mapping, since it can only
be its own cause.  These cases check that triggered_token still returns
the very object that fired, and raise_if_triggered() its Python name, on
every path: a token never chained from, a chain that later becomes a
parent, a parent chained from after it fired, triggers from a C thread,
and names the C core cannot hold exactly."""

import gc
import threading

import pytest

from cancel_token import CancelToken, OperationCancelled
from cancel_token import _core


def _trigger_in_c_thread(token):
    """Trigger token from a C thread and wait until it has been."""
    done = threading.Event()
    _core._trigger_from_c_thread(token)
    reg = token._on_trigger(done.set)
    try:
        assert done.wait(timeout=60)
    finally:
        reg.close()


def test_unchained_token_is_its_own_cause():
    token = CancelToken('alone')
    token.trigger()
    assert token.triggered_token is token
    with pytest.raises(OperationCancelled,
                       match='Cancellation requested by alone token'):
        token.raise_if_triggered()


def test_unchained_token_triggered_in_c_thread_is_its_own_cause():
    token = CancelToken('from-c')
    _trigger_in_c_thread(token)
    assert token.triggered_token is token


def test_renamed_unchained_token_keeps_its_python_name():
    token = CancelToken('first')
    token.name = 'second \x00 name'  # not a name the core can hold
    token.trigger()
    assert token.triggered_token is token
    assert token._cancel_message() == \
        'Cancellation requested by second \x00 name token'


def test_chain_child_is_its_own_cause():
    parent = CancelToken('p')
    child = CancelToken('c').chain(parent)
    child.trigger()
    assert child.triggered_token is child
    assert not parent.triggered


def test_parent_found_through_chain():
    parent = CancelToken('p')
    children = [CancelToken('c%d' % i).chain(parent) for i in range(50)]
    parent.trigger()
    assert all(c.triggered_token is parent for c in children)


def test_chain_that_becomes_a_parent_is_found():
    root = CancelToken('root')
    mid = CancelToken('m').chain(root)  # a chain, not chained from yet
    leaf = CancelToken('l').chain(mid)  # now mid is a parent
    mid.trigger()
    assert leaf.triggered_token is mid
    assert mid.triggered_token is mid
    assert not root.triggered
    with pytest.raises(OperationCancelled,
                       match='Cancellation requested by m:root token'):
        leaf.raise_if_triggered()


def test_parent_triggered_in_c_thread_is_found():
    parent = CancelToken('cp')
    child = CancelToken('cc').chain(parent)
    _trigger_in_c_thread(parent)
    assert child.triggered_token is parent


def test_standin_named_parent_is_found_with_its_name():
    parent = CancelToken('p\x00q')  # the core holds a stand-in name
    child = CancelToken('c').chain(parent)
    parent.trigger()
    cause = child.triggered_token
    assert cause is parent
    assert cause.name == 'p\x00q'


def test_parent_object_lives_as_long_as_its_chain():
    parent = CancelToken('kept')
    child = CancelToken('c').chain(parent)
    pid = id(parent)
    del parent
    gc.collect()
    kept = [p for p in _parents_of(child) if id(p) == pid]
    assert len(kept) == 1
    _trigger_in_c_thread(kept[0])
    assert child.triggered_token is kept[0]
    assert child.triggered_token.name == 'kept'


def _parents_of(token):
    """The objects token's chain keeps alive (from the GC's point of
    view: what the object refers to)."""
    out = []
    for ref in gc.get_referents(token):
        if isinstance(ref, tuple):
            out.extend(x for x in ref if isinstance(x, CancelToken))
    return out


def test_deep_chain_cause_is_the_root_object():
    root = CancelToken('deep-root')
    token = root
    for i in range(2000):
        token = token.chain(CancelToken('d%d' % i))
    root.trigger()
    assert token.triggered_token is root
