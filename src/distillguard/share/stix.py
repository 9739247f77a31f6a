"""STIX 2.1 vocabulary of distillguard: the custom keyed-identifier SCO, its extension definitions,
the techniques (attack patterns) with their MITRE references, and indicator patterns.

STIX has no object for "an LLM API customer identifier, keyed under a sharing group's secret", and a
keyed HMAC is not a valid ``ipv4-addr:value``; so identifiers travel as the custom SCO
``x-distillguard-keyed-identifier`` (kind, value, key_id, scheme), declared by the extension
definition :data:`SCO_EXTENSION_ID` (``extension_type: new-sco``). Campaign figures (accounts,
exchanges, capability mix) ride in a property extension, :data:`CAMPAIGN_EXTENSION_ID`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from stix2 import CustomObservable, properties

__all__ = [
    "CAMPAIGN_EXTENSION_ID",
    "FP_SCHEME",
    "NAMESPACE",
    "SCO_EXTENSION_ID",
    "SCO_TYPE",
    "TECHNIQUES",
    "KeyedIdentifier",
    "Technique",
    "pattern_for",
    "stable_id",
]

#: uuid5 namespace of every deterministic id distillguard mints (same input -> same STIX id).
NAMESPACE = uuid.UUID("5b0c8d36-7f0e-4d3c-9a55-2a1f7e0c6a11")
SCO_TYPE = "x-distillguard-keyed-identifier"
SCO_EXTENSION_ID = "extension-definition--" + str(uuid.uuid5(NAMESPACE, "sco:" + SCO_TYPE + ":v1"))
CAMPAIGN_EXTENSION_ID = "extension-definition--" + str(uuid.uuid5(NAMESPACE, "property:campaign:v1"))
#: Template/preamble fingerprints are comparable only when computed by the same function: the
#: content stage's 64-bit SimHash over word 3-shingles of the first 32 + last 24 skeleton tokens.
FP_SCHEME = "distillguard-simhash64-h32t24-v1"


def stable_id(kind: str, *parts: str) -> str:
    """A STIX id that is the same every time the same thing is exported (so re-exports dedupe)."""
    return f"{kind}--{uuid.uuid5(NAMESPACE, '|'.join((kind, *parts)))}"


@CustomObservable(SCO_TYPE, [
    ("kind", properties.StringProperty(required=True)),
    ("value", properties.StringProperty(required=True)),
    ("key_id", properties.StringProperty()),
    ("scheme", properties.StringProperty()),
], id_contrib_props=["kind", "value"], extension_name=SCO_EXTENSION_ID)
class KeyedIdentifier:
    """One shared identifier: a keyed HMAC (customer identifiers) or a clear public value."""


def pattern_for(kind: str, value: str) -> str:
    """The STIX pattern of an indicator: standard ``autonomous-system`` for ASNs, the custom SCO
    otherwise (quotes and backslashes escaped as the pattern grammar requires)."""
    if kind == "asn":
        return f"[autonomous-system:number = {int(value)}]"
    v = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"[{SCO_TYPE}:kind = '{kind}' AND {SCO_TYPE}:value = '{v}']"


@dataclass(frozen=True)
class Technique:
    """An attack pattern the campaign report can evidence, with references that exist (none invented)."""

    key: str
    name: str
    description: str
    refs: tuple[tuple[str, str, str], ...] = ()  # (source_name, external_id, url)


_ATLAS = "https://atlas.mitre.org/techniques/"
TECHNIQUES: dict[str, Technique] = {t.key: t for t in (
    Technique("inference_api_exfiltration", "Exfiltration via AI inference API",
              "Harvesting model outputs at scale through the public inference API to train another model "
              "(distillation).",
              (("mitre-atlas", "AML.T0024", _ATLAS + "AML.T0024"),
               ("mitre-atlas", "AML.T0040", _ATLAS + "AML.T0040"),
               ("mitre-atlas", "AML.T0005", _ATLAS + "AML.T0005"))),
    Technique("cot_elicitation", "Chain-of-thought elicitation",
              "Prompts that coerce the model into writing out its full reasoning trace, to harvest it as "
              "training data."),
    Technique("templated_preambles", "Templated role preambles",
              "One role preamble / prompt template sent from many accounts around varying task content."),
    Technique("grader_prompts", "Grader and reward-model prompts",
              "Using the model as a grader or reward model: scoring candidate answers against rubrics."),
    Technique("hydra_accounts", "Hydra account networks",
              "Many accounts created in waves and replaced as they are banned, sharing payment instruments.",
              (("mitre-attack", "T1585", "https://attack.mitre.org/techniques/T1585/"),)),
    Technique("proxy_rotation", "Proxy rotation",
              "Requests spread over rotating residential / mobile proxy exits shared with ordinary users.",
              (("mitre-attack", "T1090", "https://attack.mitre.org/techniques/T1090/"),)),
    Technique("model_release_pivot", "Model-release pivot",
              "Switching most traffic to a newly released model within hours of its release."),
)}
