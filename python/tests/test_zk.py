# SPDX-License-Identifier: MIT
"""A CancelToken proxy over ZooKeeper (issue 10, the Python part): a real
3-member ensemble on loopback started by scripts/zk-ensemble.sh, a Python
owner process publishing a token through BaseCancelTokenManager with a
zk:// address, a proxy in this process awaited in asyncio, and the
trigger from a C process (ct_py_zk_trigger, over canceltoken_zk.h).

Skipped, and said so, when the package was built without the ZooKeeper
backend, when the ensemble script or the C helper is not known
(CT_ZK_ENSEMBLE, CT_ZK_TRIGGER: the CMake build's ctest sets both), or
when Debian's zookeeper server or a JRE is not installed."""

import asyncio
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cancel_token import CancelTokenClient, CancelTokenProxy, _core

HERE = Path(__file__).resolve().parent
LONG = 60  # seconds: only a bound on a hang
ENSEMBLE = os.environ.get('CT_ZK_ENSEMBLE')
TRIGGER = os.environ.get('CT_ZK_TRIGGER')

ZK_JAR = os.environ.get('ZK_JAR', '/usr/share/java/zookeeper.jar')

pytestmark = pytest.mark.skipif(
    not getattr(_core, 'HAVE_ZK', 0) or not ENSEMBLE or not TRIGGER or
    not shutil.which('java') or not os.path.exists(ZK_JAR),
    reason='no ZooKeeper backend, CT_ZK_ENSEMBLE/CT_ZK_TRIGGER unset, or '
           'no ZooKeeper server here (Debian: zookeeper, a JRE)')

_state = {}


def _connect_string():
    """Start the ensemble once for this module; stopped at exit."""
    if 'connect' not in _state:
        d = tempfile.mkdtemp(prefix='ct-py-zk-')
        r = subprocess.run(['bash', ENSEMBLE, 'start', d],
                           capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            shutil.rmtree(d, ignore_errors=True)
            raise AssertionError(f'zk-ensemble.sh start: {r.stderr}')

        def stop():
            subprocess.run(['bash', ENSEMBLE, 'stop', d],
                           capture_output=True, timeout=120)
            shutil.rmtree(d, ignore_errors=True)
        atexit.register(stop)
        _state['connect'] = r.stdout.strip().splitlines()[-1]
    _state['n'] = _state.get('n', 0) + 1
    return _state['connect']


def _address():
    """A zk:// address with a chroot of its own for each test."""
    conn = _connect_string()
    return f"zk://{conn}/py-{os.getpid()}-{_state['n']}"


class Owner:
    """token_server.py serving CancelToken('base') over ZooKeeper."""

    def __init__(self, address):
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / 'token_server.py'),
             json.dumps(address)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith('READY'), line

    def ask(self, command):
        self.proc.stdin.write(command + '\n')
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.ask('quit')
                self.proc.wait(timeout=LONG)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


def _c_trigger(address, name):
    return subprocess.run([TRIGGER, address, name], capture_output=True,
                          text=True, timeout=LONG)


def test_proxy_awaited_in_asyncio_triggered_from_a_c_process():
    address = _address()
    owner = Owner(address)
    client = CancelTokenClient(address, timeout=LONG)
    try:
        client.connect()
        proxy = client.get_cancel_token()
        assert isinstance(proxy, CancelTokenProxy) and proxy.is_proxy
        assert proxy.name == 'base'
        assert not proxy.triggered and proxy.check_triggered() is False

        async def main():
            waiter = asyncio.ensure_future(proxy.wait())
            await asyncio.sleep(0)
            assert not waiter.done()
            loop = asyncio.get_running_loop()
            r = await loop.run_in_executor(
                None, _c_trigger, address, 'get_cancel_token')
            assert r.returncode == 0, r.stderr
            assert r.stdout.strip() == 'won'
            await asyncio.wait_for(waiter, LONG)
        asyncio.run(main())
        assert proxy.triggered and proxy.check_triggered() is True
        assert owner.ask('wait') == 'ok'  # the owner's token fired too
        assert owner.ask('triggered') == 'True'
        again = _c_trigger(address, 'get_cancel_token')
        assert again.returncode == 0 and again.stdout.strip() == 'lost'
    finally:
        client.shutdown()
        owner.close()


def test_check_triggered_reads_the_record_after_the_c_trigger():
    """check_triggered() reads the ensemble's record: right after the C
    process's trigger has returned it is True, without waiting."""
    address = _address()
    owner = Owner(address)
    client = CancelTokenClient(address, timeout=LONG)
    try:
        client.connect()
        proxy = client.get_cancel_token()
        r = _c_trigger(address, 'get_cancel_token')
        assert r.returncode == 0, r.stderr
        assert proxy.check_triggered() is True
    finally:
        client.shutdown()
        owner.close()


def test_proxy_trigger_reaches_the_owner_and_owner_loss():
    address = _address()
    owner = Owner(address)
    client = CancelTokenClient(address, timeout=LONG)
    try:
        client.connect()
        proxy = client.get_cancel_token()
        proxy.trigger()  # returns once the trigger is recorded
        assert proxy.triggered
        assert owner.ask('wait') == 'ok'
        other = client.get_other()  # a second token of the same owner
        owner.proc.kill()  # its session ends: owner lost
        owner.proc.wait()
        asyncio.run(asyncio.wait_for(other.wait(), LONG))
        assert other.check_triggered() is True
    finally:
        client.shutdown()
        owner.close()


def test_bad_zk_input():
    with pytest.raises(ValueError):
        CancelTokenClient('zk://', timeout=LONG).connect()
    client = CancelTokenClient(_address(), timeout=LONG)
    client.connect()
    try:
        with pytest.raises(LookupError):
            client.no_such_token()
    finally:
        client.shutdown()
    with pytest.raises(ValueError, match='authkey'):
        CancelTokenClient(_address(), authkey=b'k').connect()
