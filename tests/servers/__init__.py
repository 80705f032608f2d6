"""Real servers from Debian's packages, started by the tests in temporary directories on loopback
ports, and stopped by the PID we started (never by name)."""
