"""Layer 6, paper 3 (Ling & Ye): an LLM as the reward model for adapting Whisper to a target domain."""
