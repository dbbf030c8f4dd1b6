"""Built-in image preprocessing steps (``tfx_register_preprocessing``)."""
