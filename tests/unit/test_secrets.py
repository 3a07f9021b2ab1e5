"""Jasypt-compatible ENC(...) values, checked against values made by Jasypt 1.9.3's own CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from rwsplit.secrets import (
    EncryptionKey,
    decrypt,
    decrypt_value,
    encrypt,
    is_encrypted,
    load_key,
    read_key_file,
)

from rwsplit import SecretError

AES = "PBEWITHHMACSHA512ANDAES_256"
DES = "PBEWithMD5AndDES"

# Made by /usr/share/java/jasypt.jar (Debian libjasypt-java 1.9.3), key "k3y":
#   JasyptPBEStringEncryptionCLI input=... password=k3y [algorithm=... ivGeneratorClassName=...]
JASYPT_VECTORS = [
    ("S3DQHsQy05+sQD6y+sYmwssTJI2Ebhot", {}, "hello wörld"),
    (
        "IIp0evxfts7BMPCQMzh+x7AYVi+pmkLX1QGybRQDCsMtz+hs9Supya0TJsrDSxUT",
        {"algorithm": AES},
        "hello",
    ),
    ("E4F10871DF0AF508D2136DA977607D68", {"input_type": "hexadecimal"}, "hello"),
    ("fQWVX3IrvckEM1MR+Y5EBw==", {"iterations": 5}, "hello"),
]


@pytest.mark.parametrize(("token", "options", "plain"), JASYPT_VECTORS)
def test_decrypts_values_made_by_jasypt(token: str, options: dict[str, object], plain: str) -> None:
    assert decrypt(token, "k3y", **options) == plain  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", [DES, AES, AES.lower()])
@pytest.mark.parametrize("plain", ["", "p", "exactly8", "ünïcødé ✓ pass:w@rd/+=", "x" * 100])
def test_round_trip(algorithm: str, plain: str) -> None:
    token = encrypt(plain, "master key", algorithm=algorithm)
    assert decrypt(token, "master key", algorithm=algorithm) == plain


def test_layout_is_salt_then_iv_then_ciphertext() -> None:
    import base64

    # DES: 8-byte salt + one 8-byte block for a short value; AES: 16 salt + 16 IV + 16.
    assert len(base64.b64decode(encrypt("hello", "k"))) == 16
    assert len(base64.b64decode(encrypt("hello", "k", algorithm=AES))) == 48


def test_salt_is_random() -> None:
    assert encrypt("same", "k") != encrypt("same", "k")


def test_hexadecimal_output_is_upper_case() -> None:
    token = encrypt("hello", "k3y", output_type="hexadecimal")
    assert token == token.upper() and len(token) == 32
    assert decrypt(token, "k3y", input_type="hexadecimal") == "hello"


@pytest.mark.parametrize(("token", "options", "plain"), JASYPT_VECTORS[:2])
def test_wrong_keys_never_give_garbage(token: str, options: dict[str, object], plain: str) -> None:
    # Deterministic: the same wrong keys against the same Jasypt value every run. For the DES
    # value, 5 of these keys (wrong-52, -211, -226, -793, -819) give well-formed padding:
    # only the UTF-8 check stops them.
    algorithm = str(options.get("algorithm", DES))
    for i in range(1000 if algorithm == DES else 200):
        with pytest.raises(SecretError, match=r"key is wrong"):
            decrypt(token, f"wrong-{i}", algorithm=algorithm)


def test_value_of_the_other_algorithm_is_refused() -> None:
    des_token = JASYPT_VECTORS[0][0]
    with pytest.raises(SecretError, match=r"wrong length for PBEWITHHMACSHA512ANDAES_256"):
        decrypt(des_token, "k3y", algorithm=AES)
    aes_token = JASYPT_VECTORS[1][0]
    with pytest.raises(SecretError):
        decrypt(aes_token, "k3y", algorithm=DES)


@pytest.mark.parametrize("bad", ["not base64!", "QUJD", ""])
def test_malformed_values(bad: str) -> None:
    with pytest.raises(SecretError):
        decrypt(bad, "k3y")


def test_non_ascii_and_empty_keys_are_refused() -> None:
    with pytest.raises(SecretError, match=r"non-ASCII"):
        encrypt("x", "kéy")
    with pytest.raises(SecretError, match=r"empty"):
        decrypt(JASYPT_VECTORS[0][0], "")


def test_unknown_algorithm() -> None:
    with pytest.raises(SecretError, match=r"unsupported encryption algorithm 'PBEWithSHA1AndRC4'"):
        encrypt("x", "k", algorithm="PBEWithSHA1AndRC4")


def test_is_encrypted() -> None:
    assert is_encrypted("ENC(abc)") and is_encrypted("  ENC(abc) ")
    assert not is_encrypted("enc(abc)") and not is_encrypted("xENC(abc)") and not is_encrypted(3)


def test_decrypt_value() -> None:
    token = JASYPT_VECTORS[0][0]
    assert decrypt_value(f"ENC({token})", "k3y") == "hello wörld"
    assert decrypt_value("plain ENC(", None) == "plain ENC("
    with pytest.raises(SecretError, match=r"db.password is encrypted .* RWSPLIT_ENCRYPTION_KEY"):
        decrypt_value(f"ENC({token})", None, where="db.password")
    key = EncryptionKey("wrong-key-value", source="RWSPLIT_ENCRYPTION_KEY")
    with pytest.raises(SecretError) as info:
        decrypt_value(f"ENC({token})", key, where="db.password")
    assert "key from RWSPLIT_ENCRYPTION_KEY" in str(info.value)
    assert "wrong-key-value" not in str(info.value)


def test_key_repr_hides_the_key() -> None:
    key = EncryptionKey("top-secret-key", algorithm="pbewithhmacsha512andaes_256")
    assert "top-secret-key" not in repr(key)
    assert key.algorithm == AES


# ---------------------------------------------------------------------------------- key sources


def _key_file(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    p.chmod(0o600)
    return p


def test_key_precedence(tmp_path: Path) -> None:
    f1 = _key_file(tmp_path, "explicit.key", "from-explicit-file\n")
    f2 = _key_file(tmp_path, "env.key", "from-env-file\n")
    env = {
        "RWSPLIT_ENCRYPTION_KEY": "from-env",
        "RWSPLIT_ENCRYPTION_KEY_FILE": str(f2),
        "JASYPT_ENCRYPTOR_PASSWORD": "from-jasypt",
    }

    def key(**kwargs: object) -> str | None:
        found = load_key(**kwargs)  # type: ignore[arg-type]
        return found.key if found else None

    assert key(key="arg", key_file=f1, environ=env) == "arg"
    assert key(key_file=f1, environ=env) == "from-explicit-file"
    assert key(environ=env) == "from-env"
    del env["RWSPLIT_ENCRYPTION_KEY"]
    assert key(environ=env) == "from-env-file"
    del env["RWSPLIT_ENCRYPTION_KEY_FILE"]
    assert key(environ=env) == "from-jasypt"
    assert key(environ={}) is None


def test_algorithm_from_environment() -> None:
    env = {"RWSPLIT_ENCRYPTION_KEY": "k", "JASYPT_ENCRYPTOR_ALGORITHM": AES.lower()}
    found = load_key(environ=env)
    assert found is not None and found.algorithm == AES
    env["RWSPLIT_ENCRYPTION_ALGORITHM"] = DES
    found = load_key(environ=env)
    assert found is not None and found.algorithm == DES
    with pytest.raises(SecretError, match=r"unsupported"):
        load_key(environ={"RWSPLIT_ENCRYPTION_ALGORITHM": "ROT13"})


def test_key_file_problems(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert read_key_file(_key_file(tmp_path, "crlf.key", "k e y\r\n")) == "k e y"
    with pytest.raises(SecretError, match=r"empty"):
        read_key_file(_key_file(tmp_path, "empty.key", "\n"))
    with pytest.raises(SecretError, match=r"more than one line"):
        read_key_file(_key_file(tmp_path, "two.key", "a\nb\n"))
    with pytest.raises(SecretError, match=r"cannot read the encryption key file .*missing.key"):
        read_key_file(tmp_path / "missing.key")
    loose = _key_file(tmp_path, "loose.key", "the-key-itself")
    loose.chmod(0o644)
    with caplog.at_level("WARNING", logger="rwsplit.secrets"):
        read_key_file(loose)
    assert "readable by other users" in caplog.text
    assert "the-key-itself" not in caplog.text
