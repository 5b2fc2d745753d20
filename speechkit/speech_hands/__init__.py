"""Layer 6, paper 4 (Speech-Hands): external ASR N-best, action-token routing and the routing demo."""
