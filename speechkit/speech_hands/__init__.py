"""Paper package: Speech-Hands - external ASR N-best, action-token routing and its demo browser."""
