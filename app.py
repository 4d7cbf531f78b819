"""ceag dashboard: ``streamlit run app.py`` (or ``make run``)."""

import streamlit as st

from pages._shared import DATA_KEY, RESULTS_KEY, data_dir, data_root, results_dir


def sidebar() -> None:
    with st.sidebar:
        current = str(results_dir())
        chosen = st.text_input("Results folder", current, help="Where runs and the DuckDB store live "
                               "(default: $CEAG_RESULTS, else ./results).")
        if chosen and chosen != current:
            st.session_state[RESULTS_KEY] = chosen
            st.rerun()
        root = data_root()
        typed = st.text_input("Data folder", str(data_dir()), help=f"Where UTKFace, FairFace and CIFAR-100 are "
                              f"read from: {root} ($CEAG_DATA) or a folder inside it.")
        resolved = (root / typed).resolve() if typed else root
        if not resolved.is_relative_to(root):
            st.error(f"The data folder must be {root} or inside it.")
        elif resolved != data_dir():
            st.session_state[DATA_KEY] = str(resolved)
            st.rerun()


def main() -> None:
    st.set_page_config(page_title="ceag", page_icon=":material/content_cut:", layout="wide")
    pages = [
        st.Page("pages/overview.py", title="Overview", icon=":material/home:", default=True),
        st.Page("pages/frontiers.py", title="Frontiers", icon=":material/scatter_plot:"),
        st.Page("pages/multipliers.py", title="Multipliers", icon=":material/show_chart:"),
        st.Page("pages/generalization.py", title="Generalization", icon=":material/compare_arrows:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/balance:"),
        st.Page("pages/launch.py", title="Launch", icon=":material/rocket_launch:"),
        st.Page("pages/runs.py", title="Runs", icon=":material/table_rows:"),
        st.Page("pages/run_one.py", title="Run one experiment", icon=":material/play_arrow:"),
    ]
    nav = st.navigation(pages)
    sidebar()
    nav.run()


main()
