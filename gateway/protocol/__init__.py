"""Protocol v1 (docs/protocol.md): strict parsing, JWS, keys, schemas, the error catalogue.

Plain functions over typed values: no I/O beyond reading the shipped contract files.
"""
