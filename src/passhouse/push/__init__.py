"""Telling devices that a pass changed: the APNs sender behind a small protocol."""
