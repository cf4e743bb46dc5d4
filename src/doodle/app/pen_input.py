"""The pen component on the page: a Streamlit custom component over the static folder doodle/app/pen/
(index.html, pen.js, pen.css: plain files served as they are, nothing to build).

Its value is the component's last message (see doodle.drawing.pen for the format and its checks).
"""

from __future__ import annotations

from pathlib import Path

import streamlit.components.v1 as components

FOLDER = Path(__file__).resolve().parent / "pen"
_pen = components.declare_component("pen", path=str(FOLDER))


def pen(key: str, size: int = 400, answered: int = -1):
    """Mount the pen (a square of at most `size` CSS px that fits its column); returns its last message or None.

    `answered`: the send number the page has just answered (the pen sends mid-stroke updates one at a time).
    """
    return _pen(size=size, answered=answered, key=key, default=None)
