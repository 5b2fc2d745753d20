"""Paper package: ReHear - refining pseudo-labels of unlabeled target-domain audio with the speech LLM."""
