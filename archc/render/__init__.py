"""Renderers: reports drawn from the IR and its cost report (tables; diagrams later)."""
