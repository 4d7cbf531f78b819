"""Pure plot functions, a tidy DataFrame in and a plotly Figure out: ``style``, ``frontier``, ``groups``,
``training``. Values arrive as fractions and show in percent and points; every point carries its run ids in
``customdata``, so a page can open the run a user selects."""
