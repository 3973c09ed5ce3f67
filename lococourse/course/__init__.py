"""Course views and helpers: mode, lab helpers, learned-vs-exact comparisons, Figure 2 runs, exercises, plotting and widgets."""
