"""Perkamo: a self-hosted loyalty and gamification engine speaking the Perkamo API."""

__version__ = "0.1.0"
