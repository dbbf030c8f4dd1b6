"""Built-in inits plugins."""
