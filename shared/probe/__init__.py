"""Probing: TLS handshakes to backends the way the gateway makes them (sockets, pyOpenSSL).

Owns: capturing a presented chain with one bounded deadline per handshake, concurrently.
The results are shared.core.capture types, which the pure core analyses.
May import: shared.common, shared.core.
"""
