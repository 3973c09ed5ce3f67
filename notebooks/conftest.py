"""pytest settings for the notebooks under nbval (``python -m pytest --nbval-lax --nbval-current-env notebooks``).

The course's solution cells start with ``if exercises.solution("NN-k", show=False):``: on *Run All* they print a
note and run nothing, so nobody gets an answer by running a notebook.  The test run must execute them anyway, so
that every solution stays correct.  This file sets ``LOCOCOURSE_SOLUTIONS=1`` in the environment of the pytest
process while it collects the notebooks; the nbval kernels are started later, as subprocesses, and inherit it
(``lococourse.course.exercises.solution`` reads it).  Nothing in ``pyproject.toml`` or ``tests/conftest.py`` is
involved; any other runner (``jupyter nbconvert --execute``) can set the variable itself.  An explicit
``LOCOCOURSE_SOLUTIONS=0`` in the environment is respected.
"""
import os

os.environ.setdefault("LOCOCOURSE_SOLUTIONS", "1")
