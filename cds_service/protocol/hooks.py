"""The CDS Hooks this service answers, named once (CDS Hooks 2.0 hook ids). The service
definitions in hooks/*.yaml spell them as strings; loading checks them against these."""

from __future__ import annotations

from typing import Final

PATIENT_VIEW: Final = "patient-view"
ORDER_SELECT: Final = "order-select"
ORDER_SIGN: Final = "order-sign"

# The hooks that carry draft orders in context.draftOrders.
ORDER_HOOKS: Final = (ORDER_SELECT, ORDER_SIGN)
SUPPORTED_HOOKS: Final = (PATIENT_VIEW, *ORDER_HOOKS)
