"""Datasets in the LeRobot v3.0 layout: read real recordings, write simulator demos."""
