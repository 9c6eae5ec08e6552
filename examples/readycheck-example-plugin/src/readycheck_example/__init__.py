"""An example readycheck plugin (see docs/plugins.md)."""
