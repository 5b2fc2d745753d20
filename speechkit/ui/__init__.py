"""Layer 5: generic display helpers (tables, plots) and notebook browsers (ipywidgets)."""
