pytest_plugins = ["tests.fix_sandbox"]
