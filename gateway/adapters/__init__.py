"""Jurisdiction adapters: identity-document checks, scheme lists and the receiver's local view (docs/protocol.md §6.1, §9.3)."""
