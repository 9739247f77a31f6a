"""Read the simulator's ``truth.jsonl``: who is benign (which persona), who serves which campaign."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from distillguard.evaluate._io import check_str, iter_json_lines, parse_ts
from distillguard.evaluate.errors import EvaluationInputError

__all__ = ["Campaign", "Persona", "Truth", "load_truth"]


@dataclass
class Campaign:
    """One campaign as truth describes it; ``account_ids`` come from the account lines."""

    campaign_id: str
    style: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    n_exchanges: int | None = None
    declared_accounts: int | None = None
    account_ids: list[str] = field(default_factory=list)


@dataclass
class Persona:
    """One benign persona; hard negatives are the ones that look like attacks (NAT, eval runners...)."""

    persona: str
    hard_negative: bool = False
    n_exchanges: int | None = None
    declared_accounts: int | None = None
    account_ids: list[str] = field(default_factory=list)


@dataclass
class Truth:
    """Labels by account: ``campaign_of[a]`` is a campaign id, or ``persona_of[a]`` a persona."""

    path: Path
    campaign_of: dict[str, str] = field(default_factory=dict)
    persona_of: dict[str, str] = field(default_factory=dict)
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    personas: dict[str, Persona] = field(default_factory=dict)

    @property
    def accounts(self) -> list[str]:
        return [*self.campaign_of, *self.persona_of]

    def is_campaign(self, account_id: str) -> bool:
        return account_id in self.campaign_of


def _opt_int(path: Path, line: int, name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise EvaluationInputError(path, "expected an integer", line=line, field=name)
    return value


def _label(path: Path, line: int, row: dict[str, Any]) -> tuple[str, str]:
    """``("campaign", id)`` or ``("benign", persona)`` from ``label``, else from campaign_id/persona."""
    label = row.get("label")
    if label is not None:
        label = check_str(path, line, "label", label)
        kind, sep, name = label.partition(":")
        if not sep or not name or kind not in ("benign", "campaign"):
            raise EvaluationInputError(
                path, f"{label!r} is not 'benign:<persona>' or 'campaign:<id>'", line=line, field="label"
            )
        return kind, name
    if row.get("campaign_id") is not None:
        return "campaign", check_str(path, line, "campaign_id", row["campaign_id"]) or ""
    if row.get("persona") is not None:
        return "benign", check_str(path, line, "persona", row["persona"]) or ""
    raise EvaluationInputError(
        path, "account line needs a label, campaign_id or persona", line=line, field="label"
    )


def load_truth(path: Path) -> Truth:
    """Parse truth.jsonl; unknown kinds and extra keys are ignored (the simulator may add more)."""
    truth = Truth(path=path)
    for line, row in iter_json_lines(path):
        if not isinstance(row, dict):
            raise EvaluationInputError(path, "expected a JSON object", line=line)
        kind = row.get("kind")
        if kind == "account":
            _account(truth, path, line, row)
        elif kind == "campaign":
            cid = check_str(path, line, "campaign_id", row.get("campaign_id")) or ""
            c = truth.campaigns.setdefault(cid, Campaign(cid))
            c.style = row.get("style") if isinstance(row.get("style"), str) else None
            c.params = row.get("params") if isinstance(row.get("params"), dict) else {}
            c.first_ts = parse_ts(path, line, "first_ts", row.get("first_ts"))
            c.last_ts = parse_ts(path, line, "last_ts", row.get("last_ts"))
            c.n_exchanges = _opt_int(path, line, "n_exchanges", row.get("n_exchanges"))
            c.declared_accounts = _opt_int(path, line, "n_accounts", row.get("n_accounts"))
        elif kind == "persona":
            name = check_str(path, line, "persona", row.get("persona")) or ""
            p = truth.personas.setdefault(name, Persona(name))
            p.hard_negative = p.hard_negative or row.get("hard_negative") is True
            p.n_exchanges = _opt_int(path, line, "n_exchanges", row.get("n_exchanges"))
            p.declared_accounts = _opt_int(path, line, "n_accounts", row.get("n_accounts"))
        elif kind is None:
            raise EvaluationInputError(
                path, "missing (expected account, campaign or persona)", line=line, field="kind"
            )
    if not truth.campaign_of and not truth.persona_of:
        raise EvaluationInputError(path, "holds no account lines")
    return truth


def _account(truth: Truth, path: Path, line: int, row: dict[str, Any]) -> None:
    account_id = check_str(path, line, "account_id", row.get("account_id")) or ""
    if account_id in truth.campaign_of or account_id in truth.persona_of:
        raise EvaluationInputError(path, f"duplicate account {account_id!r}", line=line, field="account_id")
    kind, name = _label(path, line, row)
    if kind == "campaign":
        truth.campaign_of[account_id] = name
        truth.campaigns.setdefault(name, Campaign(name)).account_ids.append(account_id)
    else:
        truth.persona_of[account_id] = name
        p = truth.personas.setdefault(name, Persona(name))
        p.account_ids.append(account_id)
        # A persona line may be missing; then any account marked hard_negative marks its persona.
        p.hard_negative = p.hard_negative or row.get("hard_negative") is True
