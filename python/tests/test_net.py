# SPDX-License-Identifier: MIT
"""Tokens across processes: the reference's cross-process tests (a token
owned by another process, reached through CancelTokenClient proxies), over
Unix sockets and TCP, with and without an authkey; managers served on a
background thread; and interoperation with the C ``cancel-token`` tool in
both directions.

Another process is driven over pipes (token_server.py), so every step
waits for an answer or an event, never for time to pass.
"""

import asyncio
import functools
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cancel_token import (
    BaseCancelTokenManager,
    CancelToken,
    CancelTokenClient,
    CancelTokenProxy,
    OperationCancelled,
    _core,
)

pytestmark = pytest.mark.skipif(not _core.HAVE_NET,
                                reason='built without canceltoken_net')

HERE = Path(__file__).resolve().parent
LONG = 60  # seconds: only a bound on a hang, never a measurement


@pytest.fixture
def short_dir():
    # Unix socket paths are limited to ~107 bytes: keep them short.
    path = tempfile.mkdtemp(prefix='ct-py-')
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=['ipc', 'tcp'])
def manager_address(request, short_dir):
    if request.param == 'ipc':
        return os.path.join(short_dir, 'tokens.ipc')
    return ('', 0)  # the server picks a port and says which


class Owner:
    """The token-owning process (token_server.py)."""

    def __init__(self, address, authkey=None):
        args = [sys.executable, str(HERE / 'token_server.py'),
                json.dumps(address)]
        if authkey is not None:
            args.append(authkey)
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split(' ', 1)
        assert line[0] == 'READY', line
        address = json.loads(line[1])
        self.address = tuple(address) if isinstance(address, list) \
            else address

    def ask(self, command):
        self.proc.stdin.write(command + '\n')
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('quit\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=LONG)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except BrokenPipeError:
                pass


@pytest.fixture
def owner(manager_address):
    o = Owner(manager_address)
    yield o
    o.close()


@pytest.fixture
def client(owner):
    manager = CancelTokenClient(owner.address)
    manager.connect()
    yield manager
    manager.shutdown()


@pytest.fixture
def token(client):
    _token = client.get_cancel_token()
    # sanity checks, as the reference's
    assert isinstance(_token, CancelTokenProxy)
    assert _token.is_proxy
    assert _token.triggered is False
    assert _token.triggered_token is None
    return _token


def run(coro):
    """asyncio.run() without touching the current loop (which
    pytest-asyncio manages between async tests)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def wait_for(token):
    """Block until token is triggered (a remote trigger arrives as a
    notice, shortly after the owner's trigger returns)."""
    run(asyncio.wait_for(token.wait(), LONG))


# -- the reference's tests ----------------------------------------------------

def test_proxy_token_remote_cancellation(token, owner):
    assert owner.ask('trigger') == 'ok'
    wait_for(token)
    assert token.triggered
    assert token.triggered_token.name == 'base'


def test_proxy_token_local_cancellation(token, owner):
    token.trigger()
    # trigger() returns once the owner's token has been triggered.
    assert owner.ask('triggered') == 'True'
    assert owner.ask('cause') == 'base'
    assert token.triggered
    assert token.triggered_token.name == 'base'


def test_local_token_can_chain_with_proxy_token(token, owner):
    local_token = CancelToken('local').chain(token)
    assert not local_token.triggered
    assert owner.ask('trigger') == 'ok'
    wait_for(local_token)
    assert local_token.triggered
    assert local_token.triggered_token.name == 'base'


async def test_proxy_token_wait(token, owner):
    async def wait_till_triggered():
        await token.wait()
        return True, token.triggered_token.name
    task = asyncio.ensure_future(wait_till_triggered())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, owner.ask, 'trigger') == 'ok'
    was_triggered, name = await asyncio.wait_for(task, LONG)
    assert was_triggered
    assert name == 'base'


async def test_proxy_token_cancellable_wait(token):
    fut = asyncio.Future()
    asyncio.get_running_loop().call_soon(
        functools.partial(fut.set_result, 'result'))
    assert await token.cancellable_wait(fut, timeout=LONG) == 'result'


async def test_proxy_token_cancellable_wait_with_timeout(token):
    with pytest.raises(asyncio.TimeoutError):
        await token.cancellable_wait(asyncio.Future(), timeout=0.01)


async def test_proxy_token_cancellable_wait_operation_cancelled_from_remote(
        token, owner):
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, owner.ask, 'trigger') == 'ok'
    with pytest.raises(OperationCancelled,
                       match='^Cancellation requested by base token$'):
        await asyncio.wait_for(
            token.cancellable_wait(asyncio.sleep(LONG)), LONG)


async def test_proxy_token_cancellable_wait_operation_cancelled_from_local(
        token):
    token.trigger()
    with pytest.raises(OperationCancelled):
        await token.cancellable_wait(asyncio.sleep(LONG))


# -- more ---------------------------------------------------------------------

def test_proxy_is_named_after_the_owner_token(token, client):
    # served as 'get_cancel_token', the owner's token is CancelToken('base')
    assert token.name == 'base'
    assert str(token) == 'base'
    assert client.get_other().name == 'other'


def test_proxy_cannot_chain_or_pickle(token):
    with pytest.raises(NotImplementedError):
        token.chain(CancelToken('local'))
    with pytest.raises(TypeError):
        pickle.dumps(token)
    with pytest.raises(TypeError):
        CancelTokenProxy('x')


def test_same_name_same_proxy(client, token):
    assert client.get_cancel_token() is token


def test_any_registered_name(client, owner):
    other = client.get_other()
    assert isinstance(other, CancelTokenProxy)
    assert not other.triggered
    other.trigger()
    assert other.triggered
    assert owner.ask('triggered') == 'False'  # 'base' is another token
    with pytest.raises(LookupError):
        client.no_such_token()
    assert sorted(name for name, _, _ in client.list_tokens()) == \
        ['get_cancel_token', 'get_other']


def test_registered_method_on_client_subclass(owner):
    class Client(CancelTokenClient):
        pass
    Client.register('get_other')
    with Client(owner.address) as manager:  # connects
        assert manager.get_other().is_proxy


def test_owner_gone_triggers_proxies(token, owner):
    waiters = CancelToken('local').chain(token)
    owner.close()
    wait_for(waiters)
    assert token.triggered
    with pytest.raises(OperationCancelled):
        token.raise_if_triggered()
    token.trigger()  # nothing left to reach: a no-op


def test_thousand_waiters_on_a_proxy(token, owner):
    async def main():
        tasks = [asyncio.ensure_future(token.wait()) for _ in range(1000)]
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) == 1001
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, owner.ask, 'trigger') == 'ok'
        await asyncio.wait_for(asyncio.gather(*tasks), LONG)
    run(main())


def test_authkey(short_dir):
    address = os.path.join(short_dir, 'secret.ipc')
    owner = Owner(address, authkey='sesame')
    try:
        good = CancelTokenClient(address, authkey=b'sesame')
        good.connect()
        assert good.get_cancel_token().triggered is False
        with pytest.raises(OSError):
            CancelTokenClient(address, authkey=b'wrong').connect()
        with pytest.raises(OSError):
            CancelTokenClient(address).connect()
        good.shutdown()
    finally:
        owner.close()


def test_no_server():
    with pytest.raises(OSError):
        CancelTokenClient('/nonexistent/ct.sock').connect()


def test_served_on_a_background_thread(manager_address):
    class TokenManager(BaseCancelTokenManager):
        pass
    token = CancelToken('main')
    TokenManager.register('get_cancel_token', callable=lambda: token)
    with TokenManager(address=manager_address) as manager:
        address = manager.address
        if isinstance(manager_address, tuple):
            assert address[0] == '127.0.0.1' and address[1] > 0
        client = CancelTokenClient(address)
        client.connect()
        proxy = client.get_cancel_token()
        # The manager itself can hand out proxies of what it serves.
        assert manager.get_cancel_token().is_proxy
        token.trigger()
        wait_for(proxy)
        assert proxy.triggered_token.name == 'main'
        client.shutdown()


def test_default_address_is_a_private_unix_socket():
    class TokenManager(BaseCancelTokenManager):
        pass
    TokenManager.register('t', callable=lambda: CancelToken('t'))
    manager = TokenManager()
    manager.start()
    try:
        assert isinstance(manager.address, str)
        assert os.path.exists(manager.address)
        client = CancelTokenClient(manager.address)
        client.connect()
        assert client.t().is_proxy
        client.shutdown()
    finally:
        manager.shutdown()
    assert not os.path.exists(os.path.dirname(manager.address))


def test_registered_callable_must_return_a_token():
    class TokenManager(BaseCancelTokenManager):
        pass
    TokenManager.register('bad', callable=lambda: 42)
    with pytest.raises(TypeError):
        TokenManager(address=('', 0)).get_server()


def test_registry_is_per_subclass():
    class A(BaseCancelTokenManager):
        pass

    class B(BaseCancelTokenManager):
        pass
    A.register('only_a', callable=lambda: CancelToken('a'))
    assert 'only_a' in A._registry and 'only_a' not in B._registry
    assert not hasattr(B, 'only_a')


def test_bad_addresses():
    for address in [42, ('host',), (1, 2)]:
        with pytest.raises(TypeError):
            CancelTokenClient(address).connect()


# -- interoperation with the C tool -------------------------------------------

def _cli():
    path = os.environ.get('CT_CLI') or shutil.which('cancel-token')
    if not path or not os.access(path, os.X_OK):
        pytest.skip('the cancel-token tool was not built (CT_CLI unset)')
    return path


def _run_cli(*args, secret=None):
    env = dict(os.environ)
    env.pop('CANCEL_TOKEN_SECRET', None)
    if secret is not None:
        env['CANCEL_TOKEN_SECRET'] = secret
    return subprocess.run([_cli(), *args], capture_output=True, text=True,
                          timeout=LONG, env=env)


@pytest.fixture
def c_server(short_dir):
    cli = _cli()
    address = os.path.join(short_dir, 'c.sock')
    env = dict(os.environ, CANCEL_TOKEN_SECRET='open sesame')
    proc = subprocess.Popen([cli, 'serve', address, 'base', 'other'],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith('listening on'), line
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=LONG)
        proc.stdout.close()


def test_python_client_of_c_server(c_server):
    manager = CancelTokenClient(c_server, authkey=b'open sesame')
    manager.connect()
    token = manager.base()
    assert token.name == 'base'
    assert not token.triggered
    local = CancelToken('local').chain(token)
    r = _run_cli('trigger', c_server, 'base', secret='open sesame')
    assert r.returncode == 0, r.stderr
    wait_for(local)
    assert local.triggered_token is token  # the served token is the proxy
    other = manager.other()
    other.trigger()  # confirmed by the C server before it returns
    r = _run_cli('wait', c_server, 'other', '--timeout', str(LONG),
                 secret='open sesame')
    assert r.returncode == 0, r.stderr
    manager.shutdown()


def test_c_client_of_python_server(short_dir):
    address = os.path.join(short_dir, 'py.sock')
    owner = Owner(address, authkey='open sesame')
    try:
        r = _run_cli('status', address, secret='open sesame')
        assert r.returncode == 0, r.stderr
        assert 'get_cancel_token\tnot-triggered' in r.stdout
        r = _run_cli('trigger', address, 'get_cancel_token',
                     secret='open sesame')
        assert r.returncode == 0, r.stderr
        assert owner.ask('triggered') == 'True'
        r = _run_cli('wait', address, 'get_cancel_token', '--timeout',
                     str(LONG), secret='open sesame')
        assert r.returncode == 0, r.stderr
        r = _run_cli('status', address, 'get_cancel_token',
                     secret='open sesame')
        assert 'triggered' in r.stdout and 'base' in r.stdout, r.stdout
        # Without the secret the Python server refuses the C client.
        r = _run_cli('status', address)
        assert r.returncode == 3
    finally:
        owner.close()


def test_c_client_waits_for_python_trigger(short_dir):
    address = os.path.join(short_dir, 'py.sock')
    owner = Owner(address)
    try:
        waiter = subprocess.Popen(
            [_cli(), 'wait', address, 'get_cancel_token', '--timeout',
             str(LONG)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        # No handshake to wait for from here: whether the trigger comes
        # before or after the tool asks, it must see it.
        assert owner.ask('trigger') == 'ok'
        out, err = waiter.communicate(timeout=LONG)
        assert waiter.returncode == 0, err
    finally:
        owner.close()


def test_server_address_has_the_real_port():
    class TokenManager(BaseCancelTokenManager):
        pass
    TokenManager.register('t', callable=lambda: CancelToken('t'))
    server = TokenManager(address=('', 0)).get_server()
    try:
        host, port = server.address
        assert host == '127.0.0.1' and port > 0
    finally:
        server.close()
    assert server.address == ('', 0)


# -- the cross-process branch's proxy API (issue 12) --------------------------

def test_check_triggered_is_a_round_trip_after_owner_trigger(token, owner):
    """The cross-process branch's check_triggered() asks the owner (a
    method call over the manager's connection), so once the owner's
    trigger() has returned, check_triggered() in another process is True
    at once, with no waiting.  Ours does one round trip (a GET of the
    served name, answered from the owner's token)."""
    assert token.check_triggered() is False
    assert owner.ask('trigger') == 'ok'  # the owner's trigger() returned
    assert token.check_triggered() is True
    assert token.triggered  # the round trip brought the local view along


def test_get_triggered_token_get_name(token, owner):
    """The branch's proxy has get_name() (the owner token's name) and
    get_triggered_token(): None until triggered, then (a proxy of) the
    owner's token that fired, named 'base' in its tests."""
    assert token.get_name() == 'base'
    assert token.get_triggered_token() is None
    assert owner.ask('trigger') == 'ok'
    cause = token.get_triggered_token()  # no waiting: a round trip
    assert cause is not None and cause.name == 'base'


def test_proxy_get_event_loop_is_the_running_loop(token):
    """The branch's proxy.get_event_loop() (and so proxy.loop) is
    asyncio.get_event_loop(): inside a coroutine, the running loop."""
    async def main():
        loop = asyncio.get_running_loop()
        assert token.get_event_loop() is loop
        assert token.loop is loop
    run(main())


def test_triggered_stays_local_check_triggered_asks(token, owner):
    """Ours, beyond the branch (whose `triggered` is itself a round trip):
    `triggered` never talks to the owner, so it answers while the owner is
    frozen, and check_triggered() is the call that asks: with the owner
    stopped it runs into its timeout."""
    os.kill(owner.proc.pid, signal.SIGSTOP)
    # The owner is our child: wait until it has really stopped (a signal
    # is delivered asynchronously; its server thread could still answer).
    _, status = os.waitpid(owner.proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    try:
        assert token.triggered is False
        with pytest.raises(TimeoutError):
            token.check_triggered(timeout=0.2)
    finally:
        os.kill(owner.proc.pid, signal.SIGCONT)
    assert token.check_triggered() is False


def test_check_triggered_after_connection_loss(token, owner):
    """When the owner is gone the proxy is triggered (owner lost), and
    check_triggered() says so instead of raising."""
    owner.proc.kill()
    owner.proc.wait()
    wait_for(token)
    assert token.check_triggered() is True
