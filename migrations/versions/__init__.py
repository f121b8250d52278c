"""Revision scripts. Each file holds one schema change; never edit one that has shipped."""
