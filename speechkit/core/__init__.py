"""Layer 1, the base: file writing, metric records and provenance, text normalisation, the shared vocabulary."""
