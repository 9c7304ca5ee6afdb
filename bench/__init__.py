"""Benchmarks: scripts that print figures. Not tests; nothing here runs under pytest."""
