"""SMTP: the content filter beside Postfix (filter, with wire and relay), and submission of the
warning (submit).
"""
