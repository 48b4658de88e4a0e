"""backd_ops: operate on Backd BNPL orders after checkout, safely and in bulk, from Python and Jupyter."""

from .accounts import reconcile_accounts
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
from .config import ApprovalPolicy
from .errors import (
    APIError,
    ApprovalError,
    AuthenticationError,
    BackdError,
    ConcurrentRunError,
    ConfigurationError,
    FindingsError,
    InputError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    OrderStateError,
    PartialPlanError,
    PlanAccountError,
    PlanError,
    ProductionGuardError,
    RateLimitError,
    RequestTimeout,
    ServerError,
)
from .execution import execute_plan
from .journal import Journal
from .ledger import LedgerError, load_ledger
from .models import Order, OrderStatus, Refund, RefundStatus
from .money import parse_amount
from .plans import approve_plan, load_plan
from .reconcile import Reconciliation, reconcile
from .tables import read_table
from .undo import undo_run

__all__ = [
    "APIError",
    "ApprovalError",
    "ApprovalPolicy",
    "AuthenticationError",
    "BackdClient",
    "BackdError",
    "ConcurrentRunError",
    "ConfigurationError",
    "FindingsError",
    "InputError",
    "InvalidRequestError",
    "NetworkError",
    "NotFoundError",
    "Order",
    "OrderStateError",
    "OrderStatus",
    "PartialPlanError",
    "PlanAccountError",
    "PlanError",
    "ProductionGuardError",
    "RateLimitError",
    "Refund",
    "RefundStatus",
    "RequestTimeout",
    "ServerError",
    "Journal",
    "LedgerError",
    "Reconciliation",
    "approve_plan",
    "cancel_orders",
    "confirm_orders",
    "connect",
    "delete_refunds",
    "execute_plan",
    "fetch_orders",
    "find_orders",
    "load_ledger",
    "load_plan",
    "parse_amount",
    "place_orders",
    "read_table",
    "reconcile",
    "reconcile_accounts",
    "refund_orders",
    "run_operation",
    "summarize_outcomes",
    "undo_run",
    "update_orders",
]
