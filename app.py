"""ceag dashboard: ``streamlit run app.py`` (or ``make run``)."""

import streamlit as st

from dashboard import _state
from dashboard._shared import FolderError, confine, data_root, results_problem, results_root


def sidebar() -> None:
    """The folders, as typed (kept in the view and the URL); a bad one gets an error box, never a traceback."""
    with st.sidebar:
        _state.widget(st.text_input, "results", "Results folder", default=str(results_root()),
                      help=f"Where runs and the DuckDB store live: {results_root()} ($CEAG_RESULTS, else "
                           "./results) or a folder inside it.")
        problem = results_problem()
        if problem:
            st.error(problem)
        typed = _state.widget(st.text_input, "data", "Data folder", default=str(data_root()),
                              help=f"Where UTKFace, FairFace and CIFAR-100 are read from: {data_root()} "
                                   "($CEAG_DATA) or a folder inside it.")
        try:
            confine(data_root(), typed, "data")
        except FolderError as err:
            st.error(str(err))


def main() -> None:
    st.set_page_config(page_title="ceag", page_icon=":material/content_cut:", layout="wide")
    pages = [
        st.Page("dashboard/overview.py", title="Overview", icon=":material/home:", default=True),
        st.Page("dashboard/frontiers.py", title="Frontiers", icon=":material/scatter_plot:"),
        st.Page("dashboard/multipliers.py", title="Multipliers", icon=":material/show_chart:"),
        st.Page("dashboard/curves.py", title="Curves", icon=":material/stacked_line_chart:"),
        st.Page("dashboard/generalization.py", title="Generalization", icon=":material/compare_arrows:"),
        st.Page("dashboard/compare.py", title="Compare", icon=":material/balance:"),
        st.Page("dashboard/audit_predictions.py", title="Audit predictions", icon=":material/upload_file:"),
        st.Page("dashboard/casualties.py", title="What pruning broke", icon=":material/broken_image:"),
        st.Page("dashboard/launch.py", title="Launch", icon=":material/rocket_launch:"),
        st.Page("dashboard/runs.py", title="Runs", icon=":material/table_rows:"),
        st.Page("dashboard/run_one.py", title="Run one experiment", icon=":material/play_arrow:"),
    ]
    nav = st.navigation(pages)
    _state.restore()  # before anything reads the view: a sidebar click cleared the URL
    sidebar()
    nav.run()


main()
