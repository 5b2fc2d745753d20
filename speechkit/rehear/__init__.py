"""Layer 6, paper 2 (ReHear): pseudo-labels of unlabeled audio refined by an audio-aware LLM, round by round."""
