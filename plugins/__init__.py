"""tfx's built-in plugins, declared through the `tfx` entry points like any third-party plugin."""
