"""Harnesses run by hand (one command each) and, small, by their tests: crash.py (kill -9 at random
points) and faults.py (injected server faults); served.py reads back what a crawler is served."""
