"""speechkit: a reference kit for LLM-assisted speech recognition (library behind the numbered notebooks)."""

__version__ = "0.1.0"
