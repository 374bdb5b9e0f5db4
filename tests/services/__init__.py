"""Real local servers for the test suite: S3 (moto, rclone), a fault-injecting HTTP proxy, Kafka
(Tansu) and a Kubernetes API stand-in.  Fixtures live in :mod:`tests.services.plugin`.

Import from the submodules (``tests.services.s3``, ``.faultproxy``, ``.kafka``, ``.kube``,
``.ports``).  Nothing heavy is imported here, so that loading the pytest plugin does not import
kafka-python/moto/kubernetes before pytest's warning filters are configured.
"""
