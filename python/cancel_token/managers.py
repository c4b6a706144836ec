# SPDX-License-Identifier: MIT
"""Tokens across process boundaries: the reference's Manager API, served by
libcanceltoken's token server and client (canceltoken_net.h,
docs/PROTOCOL.md) instead of multiprocessing's.

The owning process subclasses BaseCancelTokenManager, registers each token
under a name, and serves them (get_server().serve_forever(), or start()).
Another process -- Python through CancelTokenClient, or C through the
library or the ``cancel-token`` tool -- connects and gets proxies: real
tokens of its own that the server triggers, by a notice it pushes, when the
owner's token is triggered.  So ``proxy.triggered`` is a local atomic load,
and ``await proxy.wait()`` is woken by the client's thread through the
proxy's descriptor.

Design notes:

- The registered callable is called once, when the server is made, and must
  return a CancelToken; the server then serves that token under the
  registered name.  (multiprocessing calls it per request, to make a new
  shared object each time; a token is shared as it is.)
- Addresses are multiprocessing's: a str (or path) is a Unix socket, a
  ``(host, port)`` tuple is TCP, and an empty host binds or reaches
  loopback only.  A ``zk://HOST:PORT[,...]/CHROOT`` str is a ZooKeeper
  ensemble (cancel_token._core.ZkClient over canceltoken_zk.h): serving
  publishes the registered tokens under the chroot, owned by the
  manager's session, and connecting attaches proxies by name; there
  check_triggered() reads the recorded state afresh.  They are turned into the C library's address strings
  here.  ``authkey`` becomes the server's shared secret (HMAC-SHA256
  challenge-response); unlike multiprocessing there is no default key, so
  unrelated processes and the C tool can connect.
- Unlike multiprocessing, start() serves on a thread of this process: the
  tokens live here, and a child process could not share them.
"""

import asyncio
import os
import shutil
import tempfile
import threading

from . import _core
from .token import CancelToken

__all__ = ["BaseCancelTokenManager", "CancelTokenClient", "CancelTokenProxy"]


_ZK_AUTHKEY = ("no authkey with zk:// addresses: ZooKeeper credentials come "
               "from $CT_ZK_AUTH_FILE or $CT_ZK_AUTH, never from an argument")


def _need_net():
    if not _core.HAVE_NET:
        raise NotImplementedError(
            "cancel_token was built without the token server and client "
            "(canceltoken_net)")


def _to_c_address(address):
    """The C library's address string for a multiprocessing-style address."""
    if isinstance(address, (str, bytes, os.PathLike)):
        path = os.fsdecode(address)
        if not path:
            raise ValueError("empty socket path")
        # The C parser reads a string with a ':' and no '/' as HOST:PORT.
        return path if "/" in path else "./" + path
    if isinstance(address, tuple) and len(address) in (2, 4):
        host, port = address[0], address[1]
        if not isinstance(host, str):
            raise TypeError(f"host must be a str, not {type(host).__name__}")
        port = int(port)
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range: {port}")
        if ":" in host:  # IPv6
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    raise TypeError(
        "address must be a socket path (str) or a (host, port) tuple, "
        f"not {address!r}")


def _from_c_address(text, like):
    """A bound C address string in the form the caller used (like)."""
    if not isinstance(like, tuple):
        return like
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host, int(port))


def _is_zk(address):
    return isinstance(address, str) and address.startswith("zk://")


def _need_zk():
    if not getattr(_core, "HAVE_ZK", 0):
        raise NotImplementedError(
            "cancel_token was built without the ZooKeeper backend "
            "(canceltoken_zk; Debian: libzookeeper-mt-dev)")


class _ZkPublisher:
    """The serving side over ZooKeeper, in the shape of _core.Server: the
    registered tokens are published, owned by one session, and stay so
    until close() ends the session (proxies then report owner lost)."""

    def __init__(self, address, timeout):
        _need_zk()
        self.address = address
        self._timeout = timeout
        self._zk = _core.ZkClient(address, timeout)

    @property
    def closed(self):
        return self._zk.closed

    def add(self, name, token):
        self._zk.publish(name, token, self._timeout)

    def start(self):
        pass  # the session's own thread serves already

    def close(self):
        self._zk.close()


def _secret(authkey):
    if authkey is None:
        return None
    if isinstance(authkey, str):
        return authkey.encode()
    return bytes(authkey)


class CancelTokenProxy(CancelToken):
    """A token served by another process, as returned by a CancelTokenClient.

    It behaves as a CancelToken of this process, with these differences:
    ``trigger()`` triggers the owner's token and returns once the server has
    done it; it can be chained with (``CancelToken('x').chain(proxy)``) but
    not from (``proxy.chain(x)`` raises NotImplementedError); it cannot be
    pickled.  Its name is the owner token's name, as in the reference (not
    the name it is served under).  When the connection is lost it is
    triggered (``triggered_token`` is then the proxy itself).

    Two ways to ask whether it is triggered, as in the reference's
    cross-process branch:

    - ``triggered`` is the local view: one atomic load, no round trip.  The
      server pushes the owner's trigger to every proxy, so it becomes true
      a moment (tens of microseconds on one machine) after the owner's
      ``trigger()`` returns.  Use it in loops and hot paths, and
      ``await proxy.wait()`` to be woken.
    - ``check_triggered()`` is the owner's answer: one round trip to the
      server.  If the owner's ``trigger()`` has returned, it returns True,
      whichever process asks.  Use it where that ordering matters (a test,
      a decision made once).
    """

    def __new__(cls, *args, **kwargs):
        raise TypeError(
            "CancelTokenProxy objects are made by CancelTokenClient")

    def __init__(self, *args, **kwargs):
        pass  # made by the client, never by a call

    def trigger(self):
        """Trigger the owner's token; return once the server has done it."""
        if self.triggered:  # by the owner, or the connection is gone
            return
        owner = self._owner
        if owner is None or owner.closed:
            CancelToken.trigger(self)
            return
        owner.trigger(self)

    def check_triggered(self, timeout=None):
        """Ask the owner: True if its token is triggered (one round trip,
        or none if this proxy knows already).  When the connection is
        lost the proxy is triggered (owner lost), and this says True."""
        if self.triggered:
            return True
        owner = self._owner
        if owner is not None and not owner.closed and \
                hasattr(owner, "status"):  # ZooKeeper: read the record
            return self.triggered or owner.status(
                self.__dict__["_served_as"], timeout)["triggered"]
        if owner is not None and not owner.closed:
            try:
                # A GET of the same name is answered from the served
                # token's state and applied to this proxy before it returns.
                owner.get(self.__dict__["_served_as"], type(self), timeout)
            except OSError:
                if not self.triggered:  # not the loss of the connection
                    raise
        return self.triggered

    def get_triggered_token(self, timeout=None):
        """The token that fired (as the owner reports it), after asking the
        owner with check_triggered(); None if it is not triggered."""
        if not self.check_triggered(timeout):
            return None
        return self.triggered_token

    def get_event_loop(self):
        """The running event loop (a proxy is bound to none), as in the
        reference's cross-process branch; outside a loop, the policy's
        current loop."""
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.get_event_loop_policy().get_event_loop()

    @property
    def loop(self):
        """get_event_loop(), as in the reference's cross-process branch."""
        return self.get_event_loop()

    def chain(self, token):
        raise NotImplementedError(
            "The `CancelToken.chain` API is not available to proxy tokens")

    def __reduce__(self):
        raise TypeError(
            "cannot pickle CancelTokenProxy objects: connect with "
            "CancelTokenClient in the other process instead")

    def __reduce_ex__(self, protocol):
        return self.__reduce__()


class Server:
    """A token server bound to a manager's address, as get_server() returns.

    ``serve_forever()`` serves until ``stop_event`` is set (or shutdown() is
    called on the manager, or Ctrl-C), then closes every connection -- the
    clients' proxies are then triggered -- and the socket.
    """

    def __init__(self, core, address):
        self._core = core
        self._given_address = address
        self.stop_event = threading.Event()

    @property
    def address(self):
        """The address served, with the real port for port 0."""
        if self._core.closed:
            return self._given_address
        return _from_c_address(self._core.address, self._given_address)

    def serve_forever(self):
        """Serve until stopped.  Returns normally after Ctrl-C, as
        multiprocessing's does (it does not call sys.exit)."""
        self._core.start()  # the C server runs on its own thread
        try:
            self.stop_event.wait()  # interruptible by signals
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self):
        self.stop_event.set()
        self._core.close()


class BaseCancelTokenManager:
    """Serve tokens to other processes, or connect to a process that does.

    Subclass it, register tokens on the subclass with ``register(name,
    callable=lambda: token, proxytype=CancelTokenProxy)``, make an instance
    with ``address=`` (a socket path, or ``(host, port)``) and optionally
    ``authkey=``, then either serve (``get_server().serve_forever()``,
    or ``start()`` for a background thread) or ``connect()`` and call the
    registered names to get proxies.
    """

    _registry = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._registry = dict(cls._registry)

    @classmethod
    def register(cls, typeid, callable=None, proxytype=None, exposed=None,
                 method_to_typeid=None, create_method=True):
        """Register a token under the name ``typeid``.

        Serving side: ``callable()`` returns the CancelToken to serve.
        Either side: unless ``create_method`` is false, the class gains a
        method ``typeid()`` returning a proxy of the served token (on a
        connected manager).  ``exposed`` and ``method_to_typeid`` are
        accepted for compatibility and ignored.
        """
        if not isinstance(typeid, str) or not typeid:
            raise ValueError("typeid must be a non-empty str")
        if proxytype is None:
            proxytype = CancelTokenProxy
        if not (isinstance(proxytype, type) and
                issubclass(proxytype, CancelTokenProxy)):
            raise TypeError("proxytype must be CancelTokenProxy or a subclass")
        if "_registry" not in cls.__dict__:
            cls._registry = dict(cls._registry)
        cls._registry[typeid] = (callable, proxytype)
        if create_method:
            def method(self, *args, **kwargs):
                return self._get_proxy(typeid, proxytype)
            method.__name__ = typeid
            method.__qualname__ = f"{cls.__name__}.{typeid}"
            method.__doc__ = f"A proxy of the token served as {typeid!r}."
            setattr(cls, typeid, method)

    def __init__(self, address=None, authkey=None, serializer="pickle",
                 ctx=None, *, shutdown_timeout=1.0, timeout=None):
        if _is_zk(address):
            _need_zk()
        else:
            _need_net()
        self._given_address = address
        self._authkey = _secret(authkey)
        self._timeout = timeout  # for connect() and each request
        self._server = None
        self._client = None
        self._tmpdir = None
        self._lock = threading.Lock()

    # -- addresses ----------------------------------------------------------

    @property
    def address(self):
        """The address served or connected to; for a server with port 0,
        the real port."""
        server = self._server
        if server is not None and not server._core.closed:
            return _from_c_address(server._core.address, self._given_address)
        return self._given_address

    def _c_address(self):
        if self._given_address is None:
            # As multiprocessing: a fresh Unix socket in a private directory.
            self._tmpdir = tempfile.mkdtemp(prefix="cancel-token-")
            self._given_address = os.path.join(self._tmpdir, "tokens.sock")
        return _to_c_address(self._given_address)

    # -- serving ------------------------------------------------------------

    def get_server(self):
        """A Server bound to ``address`` serving every registered token;
        call its serve_forever()."""
        address = self._c_address()
        if _is_zk(address):
            if self._authkey is not None:
                raise ValueError(_ZK_AUTHKEY)
            core = _ZkPublisher(address, self._timeout)
        else:
            core = _core.Server(address, self._authkey)
        try:
            for typeid, (make, _) in type(self)._registry.items():
                if make is None:
                    continue
                token = make()
                if not isinstance(token, _core.CoreToken):
                    raise TypeError(
                        f"the callable registered as {typeid!r} returned "
                        f"{token!r}, not a CancelToken")
                core.add(typeid, token)
        except BaseException:
            core.close()
            raise
        server = Server(core, self._given_address)
        self._server = server
        return server

    def start(self, initializer=None, initargs=()):
        """Serve on a background thread of this process until shutdown()."""
        if initializer is not None:
            initializer(*initargs)
        server = self.get_server()
        server._core.start()

    def shutdown(self):
        """Stop serving (clients' proxies are triggered: owner lost) and
        close the connection to the server, if any."""
        with self._lock:
            client, self._client = self._client, None
            server, self._server = self._server, None
        if client is not None:
            client.close()
        if server is not None:
            server.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # -- connecting ---------------------------------------------------------

    def connect(self):
        """Connect to the server at ``address``."""
        server = self._server
        if server is not None and not server._core.closed:
            c_address = server._core.address  # with the real port
        else:
            c_address = self._c_address()
        if _is_zk(c_address):
            _need_zk()
            if self._authkey is not None:
                raise ValueError(_ZK_AUTHKEY)
            client = _core.ZkClient(c_address, self._timeout)
        else:
            client = _core.Client(c_address, self._authkey, self._timeout)
        with self._lock:
            old, self._client = self._client, client
        if old is not None:
            old.close()

    def _get_proxy(self, name, proxytype=CancelTokenProxy):
        client = self._client
        if client is None:
            if self._server is None:
                raise RuntimeError("not connected: call connect() first")
            self.connect()  # a manager started here talks to itself
            client = self._client
        proxy = client.get(name, proxytype, self._timeout)
        proxy.__dict__.setdefault("_served_as", name)
        return proxy

    def list_tokens(self):
        """[(name, triggered, cause name), ...] for every served token."""
        if self._client is None:
            raise RuntimeError("not connected: call connect() first")
        if not hasattr(self._client, "list"):
            raise NotImplementedError(
                "list_tokens() is for token servers; over ZooKeeper ask "
                "for each name")
        return self._client.list(self._timeout)

    def __enter__(self):
        if self._server is None and self._client is None:
            self.start()
        return self

    def __exit__(self, *exc_info):
        self.shutdown()


class CancelTokenClient(BaseCancelTokenManager):
    """Connect to a token server and get proxies of its tokens.

    ``CancelTokenClient(address).connect()``, then ``get_cancel_token()``,
    or any other name the server registered: ``client.<name>()`` returns a
    CancelTokenProxy of the token served under that name (LookupError if
    there is none).
    """

    def __enter__(self):
        if self._client is None:
            self.connect()
        return self

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)

        def method(*args, **kwargs):
            return self._get_proxy(name)
        method.__name__ = name
        return method


CancelTokenClient.register("get_cancel_token", proxytype=CancelTokenProxy)
