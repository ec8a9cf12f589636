"""The audit ledger: canonical entries, gap-free appends, the RFC 9162 tree (docs/protocol.md §13)."""
