"""The Labelyard Textual TUI."""
