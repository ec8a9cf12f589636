"""Macao (MO): Traditional Chinese, the Social Welfare Bureau's (社會工作局) financial assistance."""

from gateway.adapters import schemes
from gateway.adapters.local_view import RECEIVER_LANG
from gateway.adapters.base import JurisdictionAdapter

ADAPTER = JurisdictionAdapter(code="MO", lang=RECEIVER_LANG["MO"], schemes=schemes.MO, zone="Asia/Macau")
