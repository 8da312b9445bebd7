"""Version control adapters (git)."""
