"""Thin Typer layer over cfctool.ops; imports torch only inside commands."""
