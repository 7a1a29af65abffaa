"""What the server, the controller and training share about a version's files.

Version strings and paths (``versions``), model cards and their verification without
unpickling (``cards``), unpickling a verified artifact (``loading``: only the server and
training import it), and atomic file writes (``fsutil``). Nothing here imports
scikit-learn at module level.
"""
