"""Server-side filing: offender rules as a Sieve script (RFC 5228), installed over ManageSieve."""
