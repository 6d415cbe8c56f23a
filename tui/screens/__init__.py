"""The TUI's screens: dashboard, tasks, task detail, workers, workflow, and the annotator's work screen."""
