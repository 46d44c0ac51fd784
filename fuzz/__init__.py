"""Coverage-guided fuzzing of eventcore's inputs from outside (``make fuzz``).

``targets`` holds one function per input surface (bytes in, nothing out; a crash
is any exception but the typed errors that surface documents), ``corpus/`` the
committed seeds, ``__main__`` the runner (``python -m fuzz --seconds 60``), which
starts each target under atheris in a process of its own.
"""
