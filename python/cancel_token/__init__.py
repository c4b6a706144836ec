# SPDX-License-Identifier: MIT
"""cancel_token: cancel tokens for asyncio (and trio, and anyio), built on
libcanceltoken.

The API is that of the ``asyncio-cancel-token`` library: CancelToken with
trigger(), triggered, triggered_token, raise_if_triggered(), chain(),
wait() and cancellable_wait(); the exceptions OperationCancelled and
EventLoopMismatch (also in cancel_token.exceptions); and, across
processes, BaseCancelTokenManager, CancelTokenClient and CancelTokenProxy
with the cross-process branch's check_triggered(), get_triggered_token(),
get_name() and get_event_loop().  The tokens are the C library's, so a
check is one atomic load however deep the chain, a trigger from any thread
or from C code wakes the event loop, and a process can serve its tokens to
others (including the C ``cancel-token`` tool) over a socket.
"""

import atexit as _atexit

from . import _core
from .exceptions import (  # noqa: F401
    BaseCancelTokenException,
    EventLoopMismatch,
    OperationCancelled,
)
from .token import CancelToken  # noqa: F401
from .managers import (  # noqa: F401
    BaseCancelTokenManager,
    CancelTokenClient,
    CancelTokenProxy,
)

#: The package's version: the repository's VERSION file, baked into the
#: extension when it was built.
__version__ = _core.__version__

# From interpreter shutdown on, C threads stop taking the GIL to run
# trigger callbacks (see src/notify.c).
_atexit.register(_core._at_exit)

__all__ = [
    "BaseCancelTokenException",
    "BaseCancelTokenManager",
    "CancelToken",
    "CancelTokenClient",
    "CancelTokenProxy",
    "EventLoopMismatch",
    "OperationCancelled",
    "__version__",
]
