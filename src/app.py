"""`streamlit run src/app.py [-- --run outputs/r18_boost]`: the drawing page, doodle.app.page.

Streamlit runs this file as a script on every interaction; the page itself is `doodle.app.page.main`.
"""

from doodle.app.page import main

main()
