"""Downstream: derivatives and their lineage, notices when a base narrows, staged release
schedules, and the public transparency page."""
