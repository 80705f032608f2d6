"""``guardmail run``: tenants, their sources and the pipeline under one supervisor.

Modules: supervisor (the TaskGroup, signals), tenant and tenants (one protected person, and
``tenants.d``), reload (watching config files), observe (status and metrics), sdnotify (systemd).
"""
