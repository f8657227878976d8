"""Node configuration: the settings dataclasses, value parsers and the cluster.toml loader."""
