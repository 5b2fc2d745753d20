"""Layer 2 (beside data): error rates, entity errors, intervals and paired differences."""
