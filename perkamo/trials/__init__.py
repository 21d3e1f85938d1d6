"""Trying a program before it goes live (docs/api.md (trying a program)): simulate events on a
profile without applying them, and back-test a draft over the stored history."""
