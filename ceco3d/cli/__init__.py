"""Thin entry points: each builds its config and calls one engine function."""
