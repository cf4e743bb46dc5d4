"""doodle: Quick, Draw! Doodle Recognition, from pen strokes to MAP@3 submissions and a drawing page."""

__version__ = "0.1.0"
