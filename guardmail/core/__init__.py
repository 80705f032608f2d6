"""Pure logic: no sockets, no asyncio, no files, no clock. Everything here is a function of its
arguments, so it is tested table-driven without mocks (tests/unit/test_core_purity.py keeps it so).
"""
