"""Pseudonymous patient keys: the same patient always gets the same key, but the key cannot be
turned back into the id without the secret, so logs and the card history hold no identifier."""

from __future__ import annotations

import hashlib
import hmac


def patient_key(patient_id: str, secret: str) -> str:
    """HMAC-SHA256 of the patient id under the site secret, as 64 hex characters."""
    return hmac.new(secret.encode(), patient_id.encode(), hashlib.sha256).hexdigest()
