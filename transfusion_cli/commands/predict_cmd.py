"""Commands of this module attach to `transfusion_cli.app.app` (filled in by its issue)."""
