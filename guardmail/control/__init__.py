"""The local Unix-socket interface for client plugins and the CLI, and what it serves.

Modules: server, client, protocol (requests and answers), offenders (reported offenders
file), nativehost (Thunderbird's native messaging host), report (reporting one message).
"""
