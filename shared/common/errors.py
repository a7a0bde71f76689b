"""Errors the bot raises on purpose. Each carries a message fit to show an operator."""

from __future__ import annotations


class BotError(Exception):
    """Base class: a clear, expected failure (bad input, out of scope, unreachable)."""


class SettingsError(BotError):
    """A setting is missing or malformed; the message names the setting."""


class InputError(BotError):
    """Input (a file, an alert, a request body) is not what the bot can work with."""


class ResourceIdError(InputError):
    """A string is not the ARM resource id the bot expected."""


class OutOfScopeError(BotError):
    """The resource is outside the scope the bot is configured to act on."""
