"""The pimphony command-line interface."""
