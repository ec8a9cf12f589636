"""Guangdong (CN-GD): Simplified Chinese, the mainland's assistance schemes (gateway/adapters/schemes.py)."""

from gateway.adapters import schemes
from gateway.adapters.local_view import RECEIVER_LANG
from gateway.adapters.base import JurisdictionAdapter

ADAPTER = JurisdictionAdapter(code="CN-GD", lang=RECEIVER_LANG["CN-GD"], schemes=schemes.CN_GD, zone="Asia/Shanghai")
