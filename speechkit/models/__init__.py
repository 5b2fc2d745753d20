"""Layer 3: the models - packaged real models, Whisper, the language model and the speech LLM."""
