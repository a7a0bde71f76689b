"""The local Azure for the bot: ARM emulator, ILB-ASE-like TLS backends, managed identity.

Run `python -m sandbox --help`; the scenario format and env file are documented in docs/sandbox.md.
"""
