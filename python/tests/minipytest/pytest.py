# SPDX-License-Identifier: MIT
"""The part of pytest's API that python/tests uses, for interpreters that
have no pytest (pyenv's here, and there is no PyPI to install it from).
run.py puts this directory on sys.path only when ``import pytest`` fails;
run.py's mini runner is what collects and runs the tests.

Provided: raises (as a context manager, with match=), skip, importorskip,
fixture (with params= and yield fixtures), mark.parametrize, mark.skipif
(on a function, or as a module's ``pytestmark``), and the fixtures
``request`` (``.param``) and ``monkeypatch`` (``setattr``).  Anything else
fails loudly (AttributeError), never silently.
"""

import importlib
import re


class Skipped(Exception):
    """A test, or a whole module, skipped; the message is the reason."""


def skip(reason=''):
    raise Skipped(reason)


def importorskip(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise Skipped(f'could not import {name!r}') from None


class _Raises:
    def __init__(self, expected, match):
        self.expected = expected
        self.match = match
        self.value = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            raise AssertionError(f'DID NOT RAISE {self.expected!r}')
        if not issubclass(exc_type, self.expected):
            return False
        if self.match is not None and not re.search(self.match, str(exc)):
            raise AssertionError(
                f'{str(exc)!r} does not match {self.match!r}')
        self.value = exc
        return True


def raises(expected, *, match=None):
    return _Raises(expected, match)


class Mark:
    def __init__(self, name, args, kwargs):
        self.name, self.args, self.kwargs = name, args, kwargs

    def __call__(self, func):  # used as a decorator
        func.__dict__.setdefault('pytestmark', []).append(self)
        return func


class _MarkFactory:
    def __getattr__(self, name):
        if name not in ('parametrize', 'skipif'):
            raise AttributeError(f'minipytest has no mark {name!r}')
        return lambda *args, **kwargs: Mark(name, args, kwargs)


mark = _MarkFactory()


class FixtureDef:
    def __init__(self, func, params):
        self.func, self.params = func, params


def fixture(func=None, *, params=None):
    def wrap(f):
        f._minipytest_fixture = FixtureDef(f, params)
        return f
    return wrap(func) if func is not None else wrap
