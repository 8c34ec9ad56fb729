"""The configuration: its schema, the checks of single values, the filter
and traffic sections, the routes, and the built-in default (default_config.yaml)."""
