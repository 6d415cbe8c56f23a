"""The workflow language: YAML loading, schema, safe expressions, compiled workflows. Pure."""
