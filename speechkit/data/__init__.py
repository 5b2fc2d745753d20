"""Layer 2: manifests, audio and features, and the embedded synthetic benchmark built from them."""
