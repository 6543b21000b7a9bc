"""The CDP driver lives in distkv/testing/cdp.py (the web bench uses it too)."""

from distkv.testing.cdp import Page, chromium_path, open_browser

__all__ = ["Page", "chromium_path", "open_browser"]
