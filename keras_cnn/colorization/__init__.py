"""Colourization as per-pixel classification over a colour palette (SPEC part A)."""
