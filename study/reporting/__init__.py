"""Figures and the study report."""
