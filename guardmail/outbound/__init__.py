"""Sending the one warning: SMTP submission (XMPP comes with the XMPP source)."""
