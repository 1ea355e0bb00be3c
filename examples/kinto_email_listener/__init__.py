"""Kinto's synchronous listener tutorial on notifycore: e-mail an administrator on record creation."""
