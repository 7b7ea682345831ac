"""Placeholder replaced by the browser-test setup (installs Debian's Chromium when possible)."""
