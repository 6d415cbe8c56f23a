"""Built-in Labelyard plugins, written as third-party plugins would be."""
