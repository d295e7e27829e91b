"""Prospecting: turns raw leads into scored, routed prospects, or rejects them with reasons."""
