"""Built-in check types, one module per family, registered as entry points."""
