"""notifycore benchmarks: each one times notifycore beside the raw work in the same run."""
