"""ceag dashboard: ``streamlit run app.py`` (or ``make run``)."""

import streamlit as st


def main() -> None:
    st.set_page_config(page_title="ceag", layout="wide")
    pages = [
        st.Page("pages/run_one.py", title="Run one experiment", icon=":material/play_arrow:", default=True),
    ]
    st.navigation(pages).run()


main()
