"""Paper package: Ling & Ye - an LLM as the reward for adapting Whisper to a target domain."""
