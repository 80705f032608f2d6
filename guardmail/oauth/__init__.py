"""OAuth2 for the accounts guardmail logs in to (issue 30).

- ``store``: the tokens of one account in one file of the state directory (0600, atomic).
- ``tokens``: a valid access token on demand, refreshed before it expires (refresh_token grant).
- ``sasl``: the XOAUTH2 and OAUTHBEARER (RFC 7628) initial responses.
- ``flows``: the sign-in of ``guardmail login``: the device authorization grant (RFC 8628) and
  the installed-app loopback flow (authorization code with PKCE, RFC 7636 and RFC 8252).

Tokens are secrets: no log line, error message or status carries one.
"""
