"""The notifycore web demo: a Flask app on the SQLite default with a background worker."""
