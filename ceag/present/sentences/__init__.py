"""Sentences generated from query rows, every number from the store: ``compare`` (chosen runs, the Compare
page's headline), ``overview`` (the Overview's story), ``data`` (how data was read), ``trust`` (diagnostics)."""
