"""Dates in the admin: every time with seconds and its time zone, in one unambiguous order.

Django's English format ("March 2, 2026, 4:26 p.m.") drops the seconds, so five events of the
same minute read alike. Read through FORMAT_MODULE_PATH in hub/settings.py.
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
