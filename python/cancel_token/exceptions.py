# SPDX-License-Identifier: MIT
"""The exceptions of cancel_token, where the reference documents them:
``cancel_token.exceptions.OperationCancelled`` and ``EventLoopMismatch``,
both subclasses of ``BaseCancelTokenException`` (itself an Exception).

They are made by the C module (it raises them), and their ``__module__``
is this one, as in the reference; ``cancel_token`` re-exports them, so
``cancel_token.OperationCancelled is cancel_token.exceptions.OperationCancelled``.
"""

from ._core import (  # noqa: F401
    BaseCancelTokenException,
    EventLoopMismatch,
    OperationCancelled,
)

__all__ = ["BaseCancelTokenException", "EventLoopMismatch",
           "OperationCancelled"]
