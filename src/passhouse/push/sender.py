"""What the worker needs from a push transport, and what it gets back."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class PushOutcome(enum.Enum):
    DELIVERED = "delivered"
    # 410 Unregistered / 400 BadDeviceToken: forget the token's registrations.
    DEVICE_GONE = "device_gone"
    # 429, 5xx, connection errors, GOAWAY: try again later with backoff.
    RETRY = "retry"
    # 403: the pass type's credentials are refused; hold its pushes until they change.
    CREDENTIALS_REJECTED = "credentials_rejected"
    # Any other refusal: retrying the same request cannot help.
    REJECTED = "rejected"
    # The transport cannot send at all now (a relay without its API key, or with a
    # refused one): the push is kept and parked, never counted as an attempt.
    SKIPPED = "skipped"


# Reason of a result for a push that never left because the sender was stopping.
NOT_SENT = "NotSent"


@dataclass(frozen=True, slots=True)
class PushResult:
    # None when no HTTP answer came back (connection error, GOAWAY, timeout).
    status: int | None
    reason: str | None = None
    # APNs' timestamp (Unix ms) on a 410: when it learned the token went stale.
    timestamp_ms: int | None = None
    latency: float = 0.0
    # Set by senders whose protocol reads statuses differently from APNs' (the relays).
    verdict: PushOutcome | None = None

    @property
    def outcome(self) -> PushOutcome:
        if self.verdict is not None:
            return self.verdict
        status = self.status
        if status == 200:
            return PushOutcome.DELIVERED
        if status == 410 or (status == 400 and self.reason == "BadDeviceToken"):
            return PushOutcome.DEVICE_GONE
        if status is None or status == 429 or status >= 500:
            return PushOutcome.RETRY
        if status == 403:
            return PushOutcome.CREDENTIALS_REJECTED
        return PushOutcome.REJECTED


class PushSender(Protocol):
    async def send(
        self, push_token: str, pass_type_id: str, push_service_url: str = ""
    ) -> PushResult:
        """Tell one device that passes of `pass_type_id` changed; never raises for APNs,
        relay or network errors (they come back as a result). `push_service_url` is where
        the device said to push (PassWallet); "" for every other transport."""
        ...

    def stop_sending(self) -> None:
        """Shutting down: let pushes already on the wire finish, answer the rest NOT_SENT."""
        ...

    async def forget_credentials(self, pass_type_id: str) -> None:
        """Drop connections of a pass type (its credentials were refused or replaced)."""
        ...

    async def aclose(self) -> None: ...
