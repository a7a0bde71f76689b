"""Foundations every other subpackage uses: errors, ARM resource ids, settings, the
progress callback type.

Owns: the error types shown to operators, case-insensitive ARM id handling, and the settings
registry (every env key the bot reads). Pure: imports only the standard library.
May import: nothing from shared.
"""
