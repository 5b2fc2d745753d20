"""Layer 3: the models - packaged real models, parameter freezing, Whisper, the LM and the speech LLM."""
