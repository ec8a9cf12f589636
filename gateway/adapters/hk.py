"""Hong Kong (HK): Traditional Chinese with Hong Kong usage, the Social Welfare Department's schemes."""

from gateway.adapters import schemes
from gateway.adapters.local_view import RECEIVER_LANG
from gateway.adapters.base import JurisdictionAdapter

ADAPTER = JurisdictionAdapter(code="HK", lang=RECEIVER_LANG["HK"], schemes=schemes.HK, zone="Asia/Hong_Kong")
