"""XMPP: the watcher (watch), the byte-exact tee and client (tee, client), stanzas (stanza),
sessions (session), archive and blocklist sync (sync, blocklist, queries), and sending the
warning (send).
"""
