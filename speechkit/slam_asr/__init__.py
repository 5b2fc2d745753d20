"""Layer 6, paper 1 (Seewo / SLAM-ASR): CoT self-correction, RLVR rewards, the decoding and context studies."""
