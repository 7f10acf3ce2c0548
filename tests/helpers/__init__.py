"""What the tests share besides fixtures (those are in ``tests/conftest.py``).

- ``processes``: real ``authority`` processes (the CLI, ``authority serve``), free ports
  and the environment they run in.
- ``postgres``: the shared PostgreSQL server of ``tests/pg_cluster.sh``, databases on it,
  and a cluster of a test's own to stop and start.
- ``clock``: a clock the tests move by hand.
- ``world``: the app in-process with its database, clients, users and sessions
  (``World``); ``oauth``: RFC 6749 requests and answers.
- ``deployment``: a work directory set up with the ``authority`` command, and its servers.
- ``stores``: key stores shared by processes; ``rotate_forever``: a process that runs
  key lifecycle steps until it is killed (``python -m tests.helpers.rotate_forever``).
- ``verifier``: RSA keys, tokens and a JWKS server for the verifier tests.
- ``bff``, ``redis_server``: the example BFF and a throwaway ``redis-server``.
- ``mount_namespace``: a private mount namespace for file system faults.

This file stays empty of imports: ``rotate_forever`` runs as a module of this package.
"""
