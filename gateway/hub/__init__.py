"""The hub: accepts signed messages, records them, and answers with signed receipts (DESIGN.md)."""
