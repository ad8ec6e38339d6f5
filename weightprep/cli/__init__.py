"""Typer front end: parse flags, call one core function, render, pick the exit code."""
