"""Layer 1, the base: file writing, metric records and provenance, text normalisers, the shared vocabulary."""
