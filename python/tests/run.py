# SPDX-License-Identifier: MIT
"""Runs the Python tests with whichever interpreter runs this file, and
ends with one line ``N passed, N failed`` (and ``N skipped``):

    PYTHONPATH=<build>/python python3 python/tests/run.py [-k WORD] [FILE...]

With pytest importable (Debian's python3-pytest and python3-pytest-asyncio)
it runs pytest on the files.  Without (the pyenv interpreters: no pytest,
and no PyPI to get it), it runs the same files with the small runner
below, and minipytest/pytest.py standing in for the pytest module: test
functions in definition order, fixtures by argument name (parametrised
ones multiply the cases), async tests each in a fresh event loop, as
pytest-asyncio's auto mode does.  CT_PY_RUNNER=mini forces the small
runner.  Exit status 0 only if nothing failed.
"""

import asyncio
import importlib
import inspect
import itertools
import os
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _use_pytest():
    if os.environ.get('CT_PY_RUNNER') == 'mini':
        return False
    try:
        import pytest  # noqa: F401
        import pytest_asyncio  # noqa: F401
    except ImportError:
        return False
    return True


def run_pytest(files, keyword):
    import pytest

    class Count:
        def __init__(self):
            self.n = {'passed': 0, 'failed': 0, 'skipped': 0}

        def pytest_runtest_logreport(self, report):
            if report.when == 'call' or report.outcome != 'passed':
                key = report.outcome if report.outcome in self.n else 'failed'
                self.n[key] += 1

        def pytest_collectreport(self, report):
            if report.failed:
                self.n['failed'] += 1

    count = Count()
    args = ['-q', '-rs', '-p', 'no:cacheprovider', '-c',
            str(HERE / 'pytest.ini'), '--rootdir', str(HERE)]
    if keyword:
        args += ['-k', keyword]
    rc = pytest.main(args + [str(f) for f in files], plugins=[count])
    n = count.n
    print(f"runner: pytest {pytest.__version__}, Python "
          f"{sys.version.split()[0]} ({sys.executable})")
    print(f"{n['passed']} passed, {n['failed']} failed, "
          f"{n['skipped']} skipped")
    return 0 if rc in (0, 5) and n['failed'] == 0 else 1


# -- the small runner ---------------------------------------------------------

class _Request:
    def __init__(self, param):
        self.param = param


class _MonkeyPatch:
    def __init__(self):
        self._undo = []

    def setattr(self, target, name, value):
        self._undo.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    def undo(self):
        for target, name, old in reversed(self._undo):
            setattr(target, name, old)
        self._undo.clear()


def _marks(obj):
    marks = getattr(obj, 'pytestmark', [])
    return list(marks) if isinstance(marks, list) else [marks]


def _cases(module, func):
    """[(id, {argname: value}, {fixture: param})] for one test function."""
    import pytest
    fixtures = {n: getattr(module, n)._minipytest_fixture
                for n in dir(module)
                if hasattr(getattr(module, n), '_minipytest_fixture')}
    arg_sets = [({}, '')]
    for m in reversed(_marks(func)):
        if m.name != 'parametrize':
            continue
        names = [s.strip() for s in m.args[0].split(',')]
        new = []
        for base, ident in arg_sets:
            for value in m.args[1]:
                values = value if len(names) > 1 else (value,)
                d = dict(base, **dict(zip(names, values)))
                new.append((d, ident + f'[{value!r}]'[:40]))
        arg_sets = new

    def needed(name, seen):
        if name in seen or name not in fixtures:
            return
        seen.add(name)
        for p in inspect.signature(fixtures[name].func).parameters:
            needed(p, seen)
    out = []
    for args, ident in arg_sets:
        seen = set()
        for p in inspect.signature(func).parameters:
            if p not in args:
                needed(p, seen)
        param_fixtures = sorted(n for n in seen if fixtures[n].params)
        for combo in itertools.product(
                *[fixtures[n].params for n in param_fixtures]):
            params = dict(zip(param_fixtures, combo))
            extra = ''.join(f'[{v}]' for v in combo)
            out.append((func.__name__ + ident + extra, args, params))
    del pytest
    return out, fixtures


def _run_case(func, args, params, fixtures):
    teardowns = []
    values = {}
    monkeypatch = _MonkeyPatch()
    teardowns.append(monkeypatch.undo)

    def get(name, param=None):
        if name in values:
            return values[name]
        if name == 'monkeypatch':
            return monkeypatch
        if name == 'request':
            return _Request(param)
        fdef = fixtures[name]
        kwargs = {p: get(p, params.get(name))
                  for p in inspect.signature(fdef.func).parameters}
        result = fdef.func(**kwargs)
        if inspect.isgenerator(result):
            gen = result
            result = next(gen)

            def finish(gen=gen):
                try:
                    next(gen)
                except StopIteration:
                    return
                raise RuntimeError(f'fixture {name} yielded twice')
            teardowns.append(finish)
        values[name] = result
        return result
    try:
        kwargs = {p: args[p] if p in args else get(p)
                  for p in inspect.signature(func).parameters}
        result = func(**kwargs)
        if inspect.iscoroutine(result):
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(result)
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(
                        asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                asyncio.set_event_loop(None)
                loop.close()
    finally:
        errors = []
        for fn in reversed(teardowns):
            try:
                fn()
            except Exception as e:  # report, but run every teardown
                errors.append(e)
        if errors:
            raise errors[0]


def run_mini(files, keyword):
    sys.path.insert(0, str(HERE / 'minipytest'))
    import pytest
    sys.path.insert(0, str(HERE))
    passed = failed = skipped = 0
    for path in files:
        name = path.stem
        try:
            module = importlib.import_module(name)
        except pytest.Skipped as e:
            print(f'SKIPPED {name}: {e}')
            skipped += keyword is None or keyword in name
            continue
        except Exception:
            print(f'ERROR collecting {name}:\n{traceback.format_exc()}')
            failed += 1
            continue
        module_marks = _marks(module)
        for fname, func in list(vars(module).items()):
            if not fname.startswith('test_') or not callable(func):
                continue
            cases, fixtures = _cases(module, func)
            for ident, args, params in cases:
                full = f'{name}.py::{ident}'
                if keyword and keyword not in full:
                    continue
                skip = [m for m in module_marks + _marks(func)
                        if m.name == 'skipif' and m.args[0]]
                if skip:
                    print(f"SKIPPED {full}: {skip[0].kwargs.get('reason')}")
                    skipped += 1
                    continue
                try:
                    _run_case(func, args, params, fixtures)
                except pytest.Skipped as e:
                    print(f'SKIPPED {full}: {e}')
                    skipped += 1
                except BaseException:
                    print(f'FAILED {full}\n{traceback.format_exc()}')
                    failed += 1
                else:
                    passed += 1
    print(f"runner: minipytest, Python {sys.version.split()[0]} "
          f"({sys.executable})")
    print(f'{passed} passed, {failed} failed, {skipped} skipped')
    return 0 if failed == 0 else 1


def main(argv):
    keyword = None
    if len(argv) >= 2 and argv[0] == '-k':
        keyword, argv = argv[1], argv[2:]
    files = [Path(a).resolve() for a in argv] or \
        sorted(HERE.glob('test_*.py'))
    if _use_pytest():
        return run_pytest(files, keyword)
    return run_mini(files, keyword)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
