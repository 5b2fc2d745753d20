"""Layer 4: training, decoding, evaluation, GRPO, Whisper adaptation and the speech-LLM stage recipe."""
