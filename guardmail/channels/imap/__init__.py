"""IMAP: watching folders with IDLE (watch), judging catch-ups in batches (batch), acting with
UID MOVE (act), and connections (conn).
"""
