# SPDX-License-Identifier: GPL-3.0-or-later
# Gajim loads the first name in dir(module) that subclasses GajimPlugin: export only the plugin.
from .plugin import GuardmailReportPlugin as GuardmailReportPlugin
