"""Agents behind one protocol (services/agents.py): ``scripted`` and ``command``."""
