"""Widgets shared by the screens: modals and small displays."""
