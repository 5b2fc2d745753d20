"""Layer 4: training, decoding, evaluation, GRPO and the speech-LLM stage recipe that every paper shares."""
