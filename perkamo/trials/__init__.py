"""Trying a program before it goes live (API.md §7): simulate events on a profile without
applying them, and back-test a draft over the stored history."""
