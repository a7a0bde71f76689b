"""Probing: TLS handshakes to backends the way the gateway makes them (sockets, pyOpenSSL).

Owns: capturing a presented chain, the negotiated protocol and cipher (and, when the gateway's
offer is refused, why) with one bounded deadline per handshake, concurrently; reading the
well-known CA store (`well_known`, WELL_KNOWN_CA_BUNDLE).
The results are shared.core.capture types, which the pure core analyses.
May import: shared.common, shared.core.
"""
