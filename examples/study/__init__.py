"""The paper's study on top of the training core: methods, sweeps and reports, for any example.

An example is one :class:`~examples.study.example.Example` record in its
``example.py`` (``EXAMPLE``): its fields, data, task and report columns. The
study imports no example: ``python -m examples.main --config=<an example's
config>`` hands it the record that ``examples/registry.py`` names, and it runs
one run, or the sweep of models x methods x seeds of ``config.sweep`` and its
report (:func:`~examples.study.experiment.run`).

Modules: ``methods`` (the compared optimizers by name), ``defaults`` (the
study's config fields), ``example`` (the record), ``experiment`` (one run, a
sweep, the entry point's logic), ``sweep`` (the grid and its results) and
``report`` (table, curves, gradient norms against depth).
"""
