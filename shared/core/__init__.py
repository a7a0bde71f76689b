"""The diagnosis core: from a gateway document, its backend health and TLS captures to findings.

Owns: the gateway and backend-health models and parsers, the SNI and port rule per SKU, the
probe-log classifier, certificate evidence, the chain as the gateway builds it (`chain`), upload
formats, verdicts (cause and fix: `verdict`, with the chain and TLS rules in `verdict_chain` and
`verdict_tls` over the shared `facts`), the expiry watch (`expiry`), the prober's order
(`probe_order`), and the JSON and text reports. Pure functions over data: no sockets, no Azure
SDK, no files, no clock reads for I/O.
May import: shared.common, the standard library and `cryptography` (certificate parsing).
"""
