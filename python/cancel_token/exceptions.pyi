# SPDX-License-Identifier: MIT
from ._core import (
    BaseCancelTokenException as BaseCancelTokenException,
    EventLoopMismatch as EventLoopMismatch,
    OperationCancelled as OperationCancelled,
)

__all__ = ["BaseCancelTokenException", "EventLoopMismatch",
           "OperationCancelled"]
