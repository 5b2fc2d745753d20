"""Layer 2, beside data: error rates (WER, CER, entity WER), bootstrap intervals and paired differences."""
