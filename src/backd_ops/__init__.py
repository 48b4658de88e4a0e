"""backd_ops: operate on Backd BNPL orders after checkout, safely and in bulk, from Python and Jupyter."""

from .bulk import (
    cancel_orders,
    confirm_orders,
    delete_refunds,
    fetch_orders,
    find_orders,
    place_orders,
    refund_orders,
    run_operation,
    summarize_outcomes,
    update_orders,
)
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
from .journal import Journal
from .models import Order, OrderStatus, Refund, RefundStatus
from .tables import read_table

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
    "Journal",
    "cancel_orders",
    "confirm_orders",
    "connect",
    "delete_refunds",
    "fetch_orders",
    "find_orders",
    "place_orders",
    "read_table",
    "refund_orders",
    "run_operation",
    "summarize_outcomes",
    "update_orders",
]
