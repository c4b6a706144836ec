# SPDX-License-Identifier: MIT
from .exceptions import (
    BaseCancelTokenException as BaseCancelTokenException,
    EventLoopMismatch as EventLoopMismatch,
    OperationCancelled as OperationCancelled,
)
from .managers import (
    BaseCancelTokenManager as BaseCancelTokenManager,
    CancelTokenClient as CancelTokenClient,
    CancelTokenProxy as CancelTokenProxy,
)
from .token import CancelToken as CancelToken

__version__: str
__all__ = [
    "BaseCancelTokenException", "BaseCancelTokenManager", "CancelToken",
    "CancelTokenClient", "CancelTokenProxy", "EventLoopMismatch",
    "OperationCancelled", "__version__",
]
