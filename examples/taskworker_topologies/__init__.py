"""Flask-TaskWorker's two topologies on notifycore: the worker in the web process, or its own."""
