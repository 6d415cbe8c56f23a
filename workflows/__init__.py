"""Example workflows and their rule tests: data, not code (a package only so they ship with labelyard)."""
