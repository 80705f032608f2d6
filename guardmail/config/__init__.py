"""Configuration: YAML in, typed and validated settings out.

Errors name the file, line, column and key (``errors.ConfigIssue``). Modules: settings (the
whole file), offenders, sources, warning, ops (their sections), tenants (tenants.d files),
yamlfile (the YAML reader with positions), secrets (password files and commands). Nothing here
imports ``channels/``.
"""
