"""Paper package: SLAM-ASR studies - decoding and context studies, chain-of-thought SFT and RLVR."""
