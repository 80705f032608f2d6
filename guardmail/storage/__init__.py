"""State behind one interface (base.py); SQLite is the embedded default."""

from guardmail.storage.base import JournalRow, Storage, StorageUnavailable, Transaction

__all__ = ["JournalRow", "Storage", "StorageUnavailable", "Transaction"]
