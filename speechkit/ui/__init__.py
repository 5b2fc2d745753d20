"""Layer 5: generic display helpers and notebook browsers (ipywidgets)."""
