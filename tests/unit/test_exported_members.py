import rwsplit


def test_all_is_pinned() -> None:
    assert sorted(rwsplit.__all__) == sorted(
        [
            "EXECUTION_OPTION",
            "Balancer",
            "Classification",
            "ClassificationError",
            "Cluster",
            "ClusterSettings",
            "ConfigurationError",
            "FailoverError",
            "FencedNodeError",
            "FailoverOptions",
            "FailoverResult",
            "Flag",
            "Monitor",
            "NoPrimaryError",
            "NoReplicaAvailableError",
            "Node",
            "NotPrimaryError",
            "PrimaryFailedError",
            "RandomBalancer",
            "ReadFailedError",
            "RetryableWriteError",
            "Role",
            "RoundRobinBalancer",
            "RoutingError",
            "RoutingSession",
            "RwSplitError",
            "SandboxError",
            "SecretError",
            "ServerBinaryNotFoundError",
            "SplitBrainError",
            "TLSConfig",
            "Target",
            "Topology",
            "TopologyError",
            "TransactionOutcomeUnknownError",
            "__version__",
            "classify",
            "classify_clause",
            "healed_statements",
            "discover",
            "failover",
            "switchover",
        ]
    )


def test_every_exported_name_exists() -> None:
    for name in rwsplit.__all__:
        assert hasattr(rwsplit, name), name


def test_every_error_derives_from_the_root() -> None:
    for name in rwsplit.__all__:
        obj = getattr(rwsplit, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, rwsplit.RwSplitError), name


def test_django_package_exports() -> None:
    import rwsplit.django

    assert sorted(rwsplit.django.__all__) == [
        "CausalScope",
        "causal_scope",
        "current_scope",
        "is_retryable",
        "outcome_unknown",
        "read_only",
        "rwsplit_error",
        "use_primary",
    ]
    for name in rwsplit.django.__all__:
        assert getattr(rwsplit.django, name).__doc__, name
