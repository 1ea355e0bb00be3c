"""Flask-Notifications' usage walkthrough, step by step, on notifycore (see README.md)."""
