"""Worlds: robots (and the safety guard between any policy and any world)."""
