"""Layer 7, the top: the headless notebook runner, the claims and their verdicts, the speed benchmark."""
