"""guardmail: block, archive and document cyber-stalkers' mail and instant messages."""

__version__ = "0.1.0"
