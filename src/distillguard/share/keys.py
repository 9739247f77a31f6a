"""Keyed hashing of customer identifiers under a group key shared by the participants.

A plain SHA-256 of an IPv4 address (2^32 values) or of a card fingerprint is reversed by brute force
in minutes, so every customer identifier leaves only as ``HMAC-SHA256(group secret, kind || value)``
written ``hmac-sha256:<key_id>:<hex>``. The kind is mixed in (domain separation) so a payment value
can never match an IP value. Keys rotate: a key file holds several keys; export uses the newest key
still valid, matching accepts any key not yet past ``not_after``.

Key file (JSON): ``{"keys": [{"key_id", "secret" (hex, >= 32 bytes), "created", "not_after"}]}`` or a
single key object.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = [
    "CLEAR_KINDS",
    "KEYED_KINDS",
    "KINDS",
    "PUBLIC_EMAIL_DOMAINS",
    "GroupKey",
    "KeyError_",
    "KeyRing",
    "PlainHashError",
    "check_keyed",
    "generate_key",
    "ip_block",
    "is_public_email_domain",
    "load_keys",
    "normalise",
    "parse_keyed",
]

#: Identifier kinds that always leave keyed (customer-identifying).
KEYED_KINDS = ("payment", "ip", "ip_block", "email_domain", "user_agent", "account_id")
#: Kinds that leave in clear: public (ASN) or not text (template/preamble fingerprints).
CLEAR_KINDS = ("asn", "template", "preamble")
KINDS = KEYED_KINDS + CLEAR_KINDS

#: Public webmail providers: a domain shared by millions identifies nobody, so it may leave in clear.
PUBLIC_EMAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com",
    "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com", "proton.me", "protonmail.com", "pm.me",
    "gmx.de", "gmx.net", "gmx.com", "web.de", "mail.com", "zoho.com", "fastmail.com", "yandex.ru",
    "yandex.com", "mail.ru", "qq.com", "163.com", "126.com", "sina.com", "naver.com", "daum.net",
    "hanmail.net", "tutanota.com", "tuta.io", "libero.it", "orange.fr", "free.fr", "laposte.net",
})

KEYED_RE = re.compile(r"^hmac-sha256:(?P<key_id>[A-Za-z0-9._-]{1,64}):(?P<hex>[0-9a-f]{64})$")
# Bare digests (md5, sha1, sha256, sha512) or scheme-prefixed plain hashes: brute-forceable, refused.
_PLAIN_RE = re.compile(r"^(?:(?:md5|sha-?1|sha-?256|sha-?512)[:$])?(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|"
                       r"[0-9a-fA-F]{64}|[0-9a-fA-F]{128})$", re.IGNORECASE)
_MIN_SECRET = 32


class PlainHashError(ValueError):
    """A peer sent an unkeyed hash (or a raw identifier) where a keyed HMAC is required."""


class KeyError_(ValueError):  # noqa: N801 - a ValueError about keys; KeyError is a builtin
    """A key file is missing, malformed, too weak, or no key is valid."""


@dataclass(frozen=True)
class GroupKey:
    """One group secret with its id and validity window."""

    key_id: str
    secret: bytes
    created: datetime
    not_after: datetime | None = None

    def valid_at(self, when: datetime) -> bool:
        return self.created <= when and (self.not_after is None or when <= self.not_after)

    def digest(self, kind: str, normalised: str) -> str:
        """``hmac-sha256:<key_id>:<hex>`` of an already normalised value."""
        mac = hmac.new(self.secret, f"{kind}\x00{normalised}".encode(), hashlib.sha256).hexdigest()
        return f"hmac-sha256:{self.key_id}:{mac}"


def _ts(text: str | None) -> datetime | None:
    if not text:
        return None
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class KeyRing:
    """The group keys a provider holds: export under :meth:`current`, match under every valid key."""

    def __init__(self, keys: Iterable[GroupKey]) -> None:
        self.keys = sorted(keys, key=lambda k: k.created)
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise KeyError_(f"duplicate key_id in key ring: {ids}")

    def current(self, when: datetime | None = None) -> GroupKey:
        """The newest key valid at ``when`` (default now): the one export signs with."""
        when = when or datetime.now(UTC)
        valid = [k for k in self.keys if k.valid_at(when)]
        if not valid:
            raise KeyError_(f"no group key is valid at {when.isoformat()} (keys: "
                            f"{', '.join(k.key_id for k in self.keys) or 'none'}); rotate in a new one")
        return valid[-1]

    def usable(self, when: datetime | None = None) -> list[GroupKey]:
        """Keys not past ``not_after`` at ``when``: matching accepts any of them (rotation overlap)."""
        when = when or datetime.now(UTC)
        return [k for k in self.keys if k.not_after is None or when <= k.not_after]

    def get(self, key_id: str) -> GroupKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def keyed(self, kind: str, value: object, key: GroupKey | None = None) -> str | None:
        """The value as it may leave: keyed HMAC, or clear for public kinds and webmail domains.

        Returns None when the value is empty or cannot be normalised (such values are not shared).
        """
        norm = normalise(kind, value)
        if norm is None:
            return None
        if kind in CLEAR_KINDS or (kind == "email_domain" and is_public_email_domain(norm)):
            return norm
        return (key or self.current()).digest(kind, norm)

    def all_keyed(self, kind: str, value: object, when: datetime | None = None) -> list[str]:
        """The value under every usable key (what a watchlist compares against)."""
        norm = normalise(kind, value)
        if norm is None:
            return []
        if kind in CLEAR_KINDS or (kind == "email_domain" and is_public_email_domain(norm)):
            return [norm]
        return [k.digest(kind, norm) for k in self.usable(when)]


def ip_block(ip: str) -> str | None:
    """The /24 of an IPv4 address, the /48 of an IPv6 one (the report stage's block)."""
    try:
        a = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    prefix = 24 if a.version == 4 else 48
    return str(ipaddress.ip_network(f"{a}/{prefix}", strict=False))


def normalise(kind: str, value: object) -> str | None:
    """Canonical text of an identifier so both providers hash the same bytes, or None if unusable."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            return None
    if kind == "ip_block":
        if "/" in text:
            try:
                return str(ipaddress.ip_network(text, strict=False))
            except ValueError:
                return None
        return ip_block(text)
    if kind == "email_domain":
        text = text.lower().rsplit("@", 1)[-1].rstrip(".")
        try:
            return text.encode("idna").decode("ascii")
        except UnicodeError:
            return text
    if kind == "user_agent":
        return " ".join(text.split())
    if kind == "asn":
        t = text.upper().removeprefix("AS")
        return t if t.isdigit() else None
    if kind in ("template", "preamble"):
        try:
            return f"{int(text) & 0xFFFFFFFFFFFFFFFF:016x}"
        except ValueError:
            return text.lower() if re.fullmatch(r"[0-9a-f]{16}", text.lower()) else None
    if kind in ("payment", "account_id"):
        return text
    raise ValueError(f"unknown identifier kind {kind!r}; choose one of {', '.join(KINDS)}")


def is_public_email_domain(domain: str) -> bool:
    return domain.lower() in PUBLIC_EMAIL_DOMAINS


def parse_keyed(value: str) -> tuple[str, str]:
    """``(key_id, hex)`` of a keyed value; raises :class:`PlainHashError` for anything else."""
    m = KEYED_RE.match(value)
    if not m:
        raise PlainHashError(f"not a keyed value (want hmac-sha256:<key_id>:<64 hex>): {value[:80]!r}")
    return m["key_id"], m["hex"]


def check_keyed(kind: str, value: str) -> None:
    """Refuse what a peer must never send: plain (unkeyed) hashes and raw customer identifiers."""
    if kind in CLEAR_KINDS:
        if normalise(kind, value) != value:
            raise PlainHashError(f"{kind} value {value[:80]!r} is not in canonical form")
        return
    if kind == "email_domain" and is_public_email_domain(value):
        return
    if KEYED_RE.match(value):
        return
    if _PLAIN_RE.match(value):
        raise PlainHashError(
            f"refusing an unkeyed hash for {kind} ({value[:24]}...): plain hashes of IPs, cards or e-mail "
            "are reversible by brute force; the sender must use hmac-sha256 under the group key")
    raise PlainHashError(f"refusing a {kind} value that is not keyed ({value[:24]!r}...): customer identifiers "
                         "must be hmac-sha256:<key_id>:<hex>")


def load_keys(paths: Path | str | Iterable[Path | str]) -> KeyRing:
    """Read one or more key files into a :class:`KeyRing`; errors name the file and what is wrong."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    keys: list[GroupKey] = []
    for p in paths:
        p = Path(p)
        try:
            doc = json.loads(p.read_text())
        except FileNotFoundError:
            raise KeyError_(f"{p}: group key file not found") from None
        except json.JSONDecodeError as e:
            raise KeyError_(f"{p}: not JSON ({e})") from None
        entries = doc.get("keys", [doc]) if isinstance(doc, dict) else doc
        for i, e in enumerate(entries):
            try:
                secret = bytes.fromhex(e["secret"])
                created = _ts(e.get("created")) or datetime(1970, 1, 1, tzinfo=UTC)
                key = GroupKey(str(e["key_id"]), secret, created, _ts(e.get("not_after")))
            except (KeyError, TypeError, ValueError) as err:
                raise KeyError_(f"{p}: key {i} is malformed ({err!r}); want key_id, secret (hex), created, "
                                "not_after") from None
            if not KEYED_RE.match(f"hmac-sha256:{key.key_id}:{'0' * 64}"):
                raise KeyError_(f"{p}: key_id {key.key_id!r} must be 1-64 of [A-Za-z0-9._-]")
            if len(secret) < _MIN_SECRET:
                raise KeyError_(f"{p}: key {key.key_id} has a {len(secret)}-byte secret; need >= {_MIN_SECRET}")
            keys.append(key)
    if not keys:
        raise KeyError_("no group keys given")
    return KeyRing(keys)


def generate_key(path: Path | str, key_id: str, *, days: int = 180, created: datetime | None = None) -> GroupKey:
    """Create a new random group key and add it to ``path`` (created if missing); returns it.

    Adding a key to an existing file is rotation: exports switch to it, matches keep accepting the
    older keys until their ``not_after``.
    """
    path = Path(path)
    created = created or datetime.now(UTC).replace(microsecond=0)
    key = GroupKey(key_id, secrets.token_bytes(32), created, created + timedelta(days=days))
    doc: dict[str, list[dict[str, str | None]]] = {"keys": []}
    if path.exists():
        old = json.loads(path.read_text())
        doc["keys"] = old.get("keys", [old])
        if any(k["key_id"] == key_id for k in doc["keys"]):
            raise KeyError_(f"{path}: key_id {key_id} already exists")
    doc["keys"].append({"key_id": key.key_id, "secret": key.secret.hex(), "created": created.isoformat(),
                        "not_after": key.not_after.isoformat() if key.not_after else None})
    path.write_text(json.dumps(doc, indent=2) + "\n")
    path.chmod(0o600)
    return key
