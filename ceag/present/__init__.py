"""What people read, generated from results: ``words`` and ``glossary``, ``sentences/``, ``plots/``, the HTML
``report``, ``csv_export`` (CSV safe for spreadsheets), ``progress`` (terminal) and ``preset_notes``.
No torch, no Streamlit."""
