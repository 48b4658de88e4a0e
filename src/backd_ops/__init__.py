"""backd_ops: operate on Backd BNPL orders after checkout, safely and in bulk, from Python and Jupyter."""

from .client import BackdClient, connect
from .errors import (
    APIError,
    AuthenticationError,
    BackdError,
    ConfigurationError,
    InputError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    OrderStateError,
    ProductionGuardError,
    RateLimitError,
    RequestTimeout,
    ServerError,
)
from .models import Order, OrderStatus, Refund, RefundStatus

__all__ = [
    "APIError",
    "AuthenticationError",
    "BackdClient",
    "BackdError",
    "ConfigurationError",
    "InputError",
    "InvalidRequestError",
    "NetworkError",
    "NotFoundError",
    "Order",
    "OrderStateError",
    "OrderStatus",
    "ProductionGuardError",
    "RateLimitError",
    "Refund",
    "RefundStatus",
    "RequestTimeout",
    "ServerError",
    "connect",
]
