"""`rwsplit encrypt` / `rwsplit decrypt` and the shared --config / --key cluster options."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
from rwsplit.secrets import decrypt, encrypt

from rwsplit import ConfigurationError
from rwsplit.cli import add_cluster_arguments, cluster_from_args, main

AES = "PBEWITHHMACSHA512ANDAES_256"
JASYPT_DES = "S3DQHsQy05+sQD6y+sYmwssTJI2Ebhot"  # "hello wörld", key k3y, by Jasypt 1.9.3

KEY_VARS = (
    "RWSPLIT_ENCRYPTION_KEY",
    "RWSPLIT_ENCRYPTION_KEY_FILE",
    "JASYPT_ENCRYPTOR_PASSWORD",
    "RWSPLIT_ENCRYPTION_ALGORITHM",
    "JASYPT_ENCRYPTOR_ALGORITHM",
    "RWSPLIT_PRIMARY_URL",
    "RWSPLIT_REPLICA_URLS",
    "RWSPLIT_HOST",
    "RWSPLIT_REPLICA_HOSTS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_jasypt_style_verbose_layout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "encrypt", "input=db-pass-1", "password=master-k")
    assert code == 0 and err == ""
    lines = out.split("\n")
    # Jasypt's exact framing: blank line, header, blank ...
    assert lines[:3] == ["", "----ENVIRONMENT-----------------", ""]
    assert lines[3].startswith("Runtime: ") and lines[3].endswith(" ")
    assert lines[4:10] == ["", "", "", "----ARGUMENTS-------------------", "", "input: ******"]
    assert lines[10:16] == ["password: ******", "", "", "", "----OUTPUT----------------------", ""]
    token = lines[16]
    assert lines[17:] == ["", "", ""]
    assert decrypt(token, "master-k") == "db-pass-1"
    assert "db-pass-1" not in out and "master-k" not in out


def test_jasypt_style_bare_output_and_aes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "encrypt",
        'input="quoted value"',
        "password=k",
        f"algorithm={AES}",
        "ivGeneratorClassName=org.jasypt.iv.RandomIvGenerator",
        "verbose=false",
    )
    assert code == 0
    assert decrypt(out.strip(), "k", algorithm=AES) == "quoted value"
    code, out, _ = run(
        capsys, "decrypt", f"input={out.strip()}", "password=k", f"algorithm={AES}", "verbose=false"
    )
    assert (code, out) == (0, "quoted value\n")


def test_decrypt_verbose_shows_the_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "decrypt", f"input={JASYPT_DES}", "password=k3y")
    assert code == 0
    assert f"input: {JASYPT_DES}\npassword: ******\n" in out
    assert out.endswith("----OUTPUT----------------------\n\nhello wörld\n\n\n")


def test_option_style_with_key_from_env_file_and_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RWSPLIT_ENCRYPTION_KEY", "k3y")
    code, out, _ = run(capsys, "decrypt", "--input", JASYPT_DES)
    assert (code, out) == (0, "hello wörld\n")
    key = tmp_path / "key"
    key.write_text("other\n")
    key.chmod(0o600)
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n"))
    code, out, _ = run(
        capsys, "encrypt", "--input", "-", "--key-file", str(key), "--output-type", "hexadecimal"
    )
    assert code == 0
    assert decrypt(out.strip(), "other", input_type="hexadecimal") == "from stdin"
    code, out, _ = run(capsys, "encrypt", "--input", "x", "--verbose")
    assert code == 0 and "----OUTPUT----" in out


def test_wrong_key_exits_1_with_jasypt_error_layout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "decrypt", f"input={JASYPT_DES}", "password=nope")
    assert code == 1
    assert "----ARGUMENTS----" in out and "----OUTPUT----" not in out
    assert err.startswith("\n----ERROR-----------------------\n\ncannot decrypt")
    assert "nope" not in out + err
    code, out, err = run(capsys, "decrypt", "--input", JASYPT_DES, "--password", "nope")
    assert (code, out) == (1, "")
    assert err.startswith("ERROR: cannot decrypt the value with PBEWithMD5AndDES: the key is wrong")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["encrypt", "input=x", "password=k", "foo=bar"], "Bad argument: foo=bar"),
        (["encrypt", "input=", "password=k"], "Bad argument: input="),
        (["encrypt", "password=k"], "input is required"),
        (["encrypt", "input=x"], "no key"),
        (["encrypt", "input=x", "password=k", "--input", "y"], "input is given both"),
        (["encrypt", "input=x", "password=k", "providerName=BC"], "providerName is not supported"),
        (["encrypt", "input=x", "password=k", "algorithm=PBEWithSHA1AndRC4"], "unsupported"),
        (["encrypt", "input=x", "password=k", "verbose=perhaps"], "expected true or false"),
        (["encrypt", "--input", "x", "--password", "k", "--iterations", "0"], "positive integer"),
        (
            [
                "encrypt",
                "input=x",
                "password=k",
                "ivGeneratorClassName=org.jasypt.iv.RandomIvGenerator",
            ],
            "PBEWithMD5AndDES is supported with org.jasypt.iv.NoIvGenerator only",
        ),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("ERROR: ") and message in err


def test_the_key_is_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    secret_key = "KEY-9f2c41"
    for argv in (
        ["encrypt", "input=PLAIN-77e1", f"password={secret_key}"],
        ["encrypt", "--input", "PLAIN-77e1", "--password", secret_key, "--verbose"],
        ["decrypt", f"input={encrypt('PLAIN-77e1', secret_key)}", f"password={secret_key}x"],
        ["decrypt", f"input={JASYPT_DES}", f"password={secret_key}", "bogus=1"],
    ):
        _, out, err = run(capsys, *argv)
        assert secret_key not in out + err, argv
        assert "PLAIN-77e1" not in out + err, argv


# ---------------------------------------------------------------------------------- --config


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cluster_arguments(parser)
    return parser.parse_args(list(argv))


def test_cluster_from_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    props = tmp_path / "db.properties"
    props.write_text(
        f"db.cloud.host=db1\ndb.cloud.password=ENC({JASYPT_DES})\ndb.cloud.replicas=db2,db3\n"
        "db.cloud.maxReplicaLag=4\nother.host=x\n"
    )
    monkeypatch.setenv("RWSPLIT_ENCRYPTION_KEY", "k3y")
    monkeypatch.setenv("RWSPLIT_PRIMARY_URL", "mysql+pymysql://ignored@db9/a")
    with cluster_from_args(parse("--config", str(props), "--key", "db.cloud")) as c:
        assert [n.name for n in c.topology.nodes] == ["db1:3306", "db2:3306", "db3:3306"]
        assert c.max_replica_lag == 4.0
        assert c.write_engine().url.password == "hello wörld"
    # --primary / --replica override the file's nodes, keep its options
    args = parse(
        "--config", str(props), "--key", "db.cloud", "--primary", "mysql+pymysql://u@db5/a"
    )
    with cluster_from_args(args) as c:
        assert [n.name for n in c.topology.nodes] == ["db5:3306"]
        assert c.max_replica_lag == 4.0
    with pytest.raises(ConfigurationError, match=r"several databases \(db.cloud, other\)"):
        cluster_from_args(parse("--config", str(props)))
    toml = tmp_path / "c.toml"
    toml.write_text('[rwsplit]\nprimary_url = "mysql+pymysql://u@db1/a"\n')
    with cluster_from_args(parse("--config", str(toml)), fallback_to_primary=False) as c:
        assert c.fallback_to_primary is False


def test_cluster_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="no cluster given"):
        cluster_from_args(parse())
    with pytest.raises(ConfigurationError, match="--key needs --config"):
        cluster_from_args(parse("--primary", "mysql+pymysql://u@db1/a", "--key", "db"))
    monkeypatch.setenv("RWSPLIT_PRIMARY_URL", "mysql+pymysql://u@db1/a")
    monkeypatch.setenv("RWSPLIT_REPLICA_URLS", "mysql+pymysql://u@db2/a,mysql+pymysql://u@db3/a")
    monkeypatch.setenv("RWSPLIT_DOWN_RETRY_INTERVAL", "7")
    with cluster_from_args(parse("--replica", "mysql+pymysql://u@db4/a")) as c:
        assert [n.name for n in c.topology.nodes] == ["db1:3306", "db4:3306"]
        assert c.down_retry_interval == 7.0
    with cluster_from_args(parse("--primary", "mysql+pymysql://u@db8/a")) as c:
        assert [n.name for n in c.topology.nodes] == ["db8:3306", "db2:3306", "db3:3306"]


def test_bad_config_file_is_exit_1_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through main(): a command that builds a cluster reports a ConfigurationError as exit 1.
    from rwsplit import cli

    def fake_register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        p = sub.add_parser("probe")
        add_cluster_arguments(p)
        p.set_defaults(func=lambda args: cluster_from_args(args).close() or 0)

    import types

    module = types.ModuleType("probe_cmd")
    module.register = fake_register  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "probe_cmd", module)
    monkeypatch.setattr(cli, "_COMMAND_MODULES", [*cli._COMMAND_MODULES, "probe_cmd"])
    props = tmp_path / "db.properties"
    props.write_text("db.host=db1\ndb.password=pa55-w0rd\ndb.port=x\n")
    code, out, err = run(capsys, "probe", "--config", str(props))
    assert code == 1
    assert f"{props} line 3: db.port: expected a port number" in err
    assert "pa55-w0rd" not in out + err
    props.write_text("db.host=db1\ndb.password=pa55-w0rd\n")
    code, _, _ = run(capsys, "probe", "--config", str(props))
    assert code == 0


def test_host_style_environment_is_enough_for_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RWSPLIT_HOST", "db1")
    monkeypatch.setenv("RWSPLIT_REPLICA_HOSTS", "db2:3307")
    with cluster_from_args(parse()) as c:
        assert [n.name for n in c.topology.nodes] == ["db1:3306", "db2:3307"]
