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
    FindingsError,
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
from .ledger import LedgerError, load_ledger
from .models import Order, OrderStatus, Refund, RefundStatus
from .reconcile import Reconciliation, reconcile
from .tables import read_table

__all__ = [
    "APIError",
    "AuthenticationError",
    "BackdClient",
    "BackdError",
    "ConfigurationError",
    "FindingsError",
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
    "LedgerError",
    "Reconciliation",
    "cancel_orders",
    "confirm_orders",
    "connect",
    "delete_refunds",
    "fetch_orders",
    "find_orders",
    "load_ledger",
    "place_orders",
    "read_table",
    "reconcile",
    "refund_orders",
    "run_operation",
    "summarize_outcomes",
    "update_orders",
]
