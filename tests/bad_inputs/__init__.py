"""The bad-input campaign of issue #12: every case runs the real command line in-process
(``seqdistill.cli.main``) and asserts the exit status, that the one-line message names the
problem, that no traceback is printed, and that no file outside the run's own output changed."""
