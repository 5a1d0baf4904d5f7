"""CLI commands, one module per feature; each registers itself on core.cli_app.app."""
