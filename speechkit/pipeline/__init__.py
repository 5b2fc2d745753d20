"""Top layer: the headless runner of the notebooks, the claims and their verdicts, the speed benchmark."""
