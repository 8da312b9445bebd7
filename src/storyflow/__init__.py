"""storyflow: a workflow engine for story-driven software delivery by AI coding agents."""

__version__ = "0.1.0"
