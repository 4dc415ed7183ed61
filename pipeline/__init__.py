"""textxfer pipeline: configuration, DAG factory and runners."""
