"""Shipped manifests (one YAML per published checkpoint), installed as package data."""
