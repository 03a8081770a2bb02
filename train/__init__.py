"""Episodic meta-training (needs the train extra: torch)."""
