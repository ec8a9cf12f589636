"""A fictional fourth jurisdiction, XA ("Atlantis"; XA is an ISO 3166 user-assigned code), for the test that
proves a jurisdiction is one module and one configuration entry (docs/architecture.md, "Adapters")."""

from gateway.adapters.base import JurisdictionAdapter
from gateway.adapters.schemes import Scheme, SchemeList

SCHEMES = SchemeList(
    "XA",
    (
        Scheme("XA_RELIEF", "minimum_living_allowance", {"en": "Atlantis Relief", "zh-Hant": "亞特蘭提斯救濟", "zh-Hans": "亚特兰提斯救济"}),
    ),
)

ADAPTER = JurisdictionAdapter(code="XA", lang="en", schemes=SCHEMES, zone="Atlantic/Azores")
