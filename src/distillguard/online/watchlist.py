"""The hook through which shared threat indicators reach the online scorer.

``OnlineScorer(..., watchlist=w)`` calls ``w.match_account(row)`` from ``learn_account`` (the contract
``accounts`` row: payment_fingerprint, signup_ip, email_domain, org_id, ...) and
``w.match_exchange(exchange)`` from ``score_one`` (the request as the gateway sees it: client_ip,
user_agent, model, ...). Each returns human-readable reasons, empty when nothing matches; a match puts
the account on notice: it gets the policy's ``watchlist.action`` (default ``challenge``) from that
request on, with reasons ``SHARED_INDICATOR: <reason>``, unless it is allow-listed. The watchlist
itself (STIX/TAXII indicators, keyed hashes) lives in ``distillguard.share``; this module only fixes
the interface so the two sides can be built apart.

>>> class Cards:
...     def match_account(self, row): return ["card on a shared list"] if row.get("payment_fingerprint") == "x" else []
...     def match_exchange(self, exchange): return []
>>> isinstance(Cards(), Watchlist)
True
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["SHARED_INDICATOR", "Watchlist"]

#: Prefix of the reasons a watchlist match adds to a decision.
SHARED_INDICATOR = "SHARED_INDICATOR"


@runtime_checkable
class Watchlist(Protocol):
    """Shared indicators (cards, sign-up blocks, client IPs, user agents ...) to match accounts against.

    Both methods must be fast (``match_exchange`` runs on every request before it is served) and
    must not raise on missing fields (rows are plain dicts; a missing key is normal)."""

    def match_account(self, row: dict[str, Any]) -> list[str]:
        """Reasons this ``accounts`` row matches shared indicators (empty: no match)."""
        ...

    def match_exchange(self, exchange: dict[str, Any]) -> list[str]:
        """Reasons this request (an ``exchanges`` row, prompt optional) matches shared indicators."""
        ...
