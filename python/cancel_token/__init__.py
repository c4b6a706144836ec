# SPDX-License-Identifier: MIT
"""cancel_token: cancel tokens for asyncio, built on libcanceltoken.

The API is that of the ``asyncio-cancel-token`` library: CancelToken with
trigger(), triggered, triggered_token, raise_if_triggered(), chain(),
wait() and cancellable_wait(); the exceptions OperationCancelled and
EventLoopMismatch; and, across processes, BaseCancelTokenManager,
CancelTokenClient and CancelTokenProxy.  The tokens are the C library's, so
a check is one atomic load however deep the chain, a trigger from any
thread or from C code wakes the event loop, and a process can serve its
tokens to others (including the C ``cancel-token`` tool) over a socket.
"""

from ._core import (  # noqa: F401
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

__version__ = "0.1.0"

__all__ = [
    "BaseCancelTokenException",
    "BaseCancelTokenManager",
    "CancelToken",
    "CancelTokenClient",
    "CancelTokenProxy",
    "EventLoopMismatch",
    "OperationCancelled",
]
