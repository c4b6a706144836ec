# SPDX-License-Identifier: MIT
"""The fast paths of token.c keep the semantics of the plain ones.

Which token fired: a token's Python object is registered with its C token,
and these cases check that triggered_token returns the very object that
fired, and raise_if_triggered() its Python name, on every path: a token
never chained from, a chain that later becomes a parent, a parent chained
from after it fired, triggers from a C thread, and names the C core cannot
hold exactly.

`triggered`: its descriptor is a small type of its own, not a getset
entry (the lookup is shorter); the last cases check that it behaves as a
getset entry does: read-only, not shadowed by an instance attribute,
overridable in a subclass, introspectable, and exact from any thread."""

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


# ---------------------------------------------------------------------------
# `triggered`'s own descriptor


def test_triggered_follows_the_core_from_every_thread():
    root = CancelToken('root')
    kids = [CancelToken(f'k{i}').chain(root) for i in range(100)]
    plain = _core.CoreToken('plain')  # not of the chain class
    assert root.triggered is False and plain.triggered is False
    assert not any(k.triggered for k in kids)
    _trigger_in_c_thread(root)
    assert root.triggered is True
    assert all(k.triggered is True for k in kids)
    plain.trigger()
    assert plain.triggered is True


def test_triggered_is_read_only_and_cannot_be_shadowed():
    token = CancelToken('ro')
    with pytest.raises(AttributeError, match='not writable'):
        token.triggered = True
    with pytest.raises(AttributeError, match='not writable'):
        del token.triggered
    token.__dict__['triggered'] = 'shadow'  # a data descriptor wins
    assert token.triggered is False
    token.trigger()
    assert token.triggered is True


def test_triggered_can_be_overridden_in_a_subclass():
    class Always(CancelToken):
        @property
        def triggered(self):
            return 'overridden'

    token = Always('sub')
    assert token.triggered == 'overridden'
    assert CancelToken('base').triggered is False


def test_triggered_descriptor_introspection():
    import inspect
    descr = _core.CoreToken.__dict__['triggered']
    assert CancelToken.triggered is descr
    assert inspect.isdatadescriptor(descr)
    assert descr.__name__ == 'triggered'
    assert descr.__objclass__ is _core.CoreToken
    assert 'True once the token' in descr.__doc__
    assert 'True once the token' in inspect.getdoc(CancelToken.triggered)
    assert descr.__get__(None, CancelToken) is descr
    token = CancelToken('direct')
    assert descr.__get__(token, CancelToken) is False
    with pytest.raises(TypeError, match='CoreToken'):
        descr.__get__(42, int)
    with pytest.raises(AttributeError, match='not writable'):
        descr.__set__(token, True)


def test_triggered_before_init_raises():
    token = CancelToken.__new__(CancelToken)
    with pytest.raises(RuntimeError, match='__init__'):
        token.triggered
