"""The crash campaign (issue 23): ``campaign`` drives it, one module a channel plugs into it."""

from tests.chaos.campaign import Campaign, Channel, Checks, Result

__all__ = ["Campaign", "Channel", "Checks", "Result"]
