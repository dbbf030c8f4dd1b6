"""CLI command modules; each attaches its commands to `transfusion_cli.app.app`."""
