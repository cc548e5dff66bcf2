"""What ceco3d-prep's fork server imports before it forks worker processes (see
``data_prep.prep.run_all``): the scene pipeline with numpy and the mesh reader, loaded once, so
that every worker starts without importing them again. Importing this module has exactly that
effect; nothing else imports it. (It must not import ``data_prep.prep``: under
``python -m data_prep.prep`` each worker runs that module as its main module.)
"""

import data_prep.scene  # noqa: F401
