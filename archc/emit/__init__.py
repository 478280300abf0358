"""Emitters: block classes → framework source files, through jinja2 templates."""
