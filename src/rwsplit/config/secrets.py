"""Jasypt-compatible encrypted values: ``password=ENC(...)``.

Many Java shops keep database passwords in configuration files as ``ENC(...)`` values made
by Jasypt's command-line tools, with the key kept elsewhere. rwsplit reads them unchanged.
Two Jasypt algorithms are supported, byte for byte:

* ``PBEWithMD5AndDES`` (the Jasypt CLI's default): an 8-byte random salt, then DES-CBC
  ciphertext; key and IV are MD5 iterated 1000 times over ``key + salt`` (PKCS #5 PBES1).
* ``PBEWITHHMACSHA512ANDAES_256`` with Jasypt's ``RandomIvGenerator`` (jasypt-spring-boot 3's
  default): a 16-byte salt, a 16-byte IV, then AES-256-CBC ciphertext; the key is
  PBKDF2-HMAC-SHA512 over the key with the salt, 1000 iterations.

Both are base64 (or upper-case hexadecimal) text. Jasypt (Java) accepts only ASCII keys, so
rwsplit refuses other keys too: a value rwsplit encrypts always decrypts in Jasypt.

A wrong key never yields garbage: the padding must be well formed and the plaintext must be
UTF-8, else :class:`~rwsplit.SecretError`. (With DES a wrong key passes the padding check by
chance about once in 256 tries; the UTF-8 check then catches nearly all of those.)

>>> token = encrypt("s3cret", "master-key")
>>> decrypt(token, "master-key")
's3cret'
>>> decrypt_value(f"ENC({token})", "master-key")
's3cret'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SecretError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "DEFAULT_ITERATIONS",
    "KEY_ENV_VARS",
    "KEY_FILE_ENV_VAR",
    "EncryptionKey",
    "decrypt",
    "decrypt_value",
    "encrypt",
    "is_encrypted",
    "load_key",
    "looks_encrypted",
    "read_key_file",
]

log = logging.getLogger("rwsplit.secrets")

DES = "PBEWithMD5AndDES"
AES = "PBEWITHHMACSHA512ANDAES_256"
ALGORITHMS = (DES, AES)
"""The Jasypt algorithms rwsplit reads and writes."""
DEFAULT_ALGORITHM = DES
"""Jasypt's CLI default."""
DEFAULT_ITERATIONS = 1000
"""Jasypt's default ``keyObtentionIterations``."""

KEY_ENV_VARS = ("RWSPLIT_ENCRYPTION_KEY", "JASYPT_ENCRYPTOR_PASSWORD")
"""Environment variables holding the key itself, in order of precedence."""
KEY_FILE_ENV_VAR = "RWSPLIT_ENCRYPTION_KEY_FILE"
"""Environment variable naming a file that holds the key."""
ALGORITHM_ENV_VARS = ("RWSPLIT_ENCRYPTION_ALGORITHM", "JASYPT_ENCRYPTOR_ALGORITHM")
"""Environment variables naming the algorithm of ``ENC(...)`` values."""

_ENC = re.compile(r"\AENC\((?P<body>.*)\)\Z", re.DOTALL)
_ENC_PREFIX = "ENC("


# ---------------------------------------------------------------------------------- algorithms


@dataclass(frozen=True, slots=True)
class _Scheme:
    name: str
    salt_size: int
    iv_size: int  # stored after the salt; 0 when the IV is derived from the key
    block: int


_SCHEMES = {
    DES.upper(): _Scheme(DES, salt_size=8, iv_size=0, block=8),
    AES.upper(): _Scheme(AES, salt_size=16, iv_size=16, block=16),
}


def _scheme(algorithm: str) -> _Scheme:
    try:
        return _SCHEMES[algorithm.upper()]
    except KeyError:
        raise SecretError(
            f"unsupported encryption algorithm {algorithm!r}; rwsplit supports "
            + " and ".join(ALGORITHMS)
        ) from None


def _key_bytes(key: str) -> bytes:
    if not key:
        raise SecretError("the encryption key is empty")
    if not key.isascii():
        # Java's PBE key specs reject non-ASCII keys ("Password is not ASCII"): a value
        # encrypted with one could never be read by Jasypt.
        raise SecretError(
            "the encryption key contains non-ASCII characters, which Jasypt cannot use; "
            "choose an ASCII key"
        )
    return key.encode("ascii")


def _cipher(
    scheme: _Scheme, key: bytes, salt: bytes, iv: bytes, iterations: int
) -> Cipher[modes.CBC]:
    # Imported here: `import rwsplit` stays light for applications without ENC() values.
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import (
        Cipher,
        CipherAlgorithm,
        algorithms,
        modes,
    )

    algorithm: CipherAlgorithm
    if scheme.name == DES:
        derived = key + salt
        for _ in range(iterations):
            derived = hashlib.md5(derived, usedforsecurity=False).digest()
        # 3DES with K1 = K2 = K3 is single DES (and needs no legacy OpenSSL provider).
        algorithm, iv = TripleDES(derived[:8] * 3), derived[8:16]
    else:
        algorithm = algorithms.AES(hashlib.pbkdf2_hmac("sha512", key, salt, iterations, 32))
    return Cipher(algorithm, modes.CBC(iv))


def _check_iterations(iterations: int) -> None:
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
        raise SecretError(f"iterations must be a positive integer, got {iterations!r}")


def encrypt(
    plaintext: str,
    key: str,
    *,
    algorithm: str = DEFAULT_ALGORITHM,
    iterations: int = DEFAULT_ITERATIONS,
    output_type: str = "base64",
) -> str:
    """Encrypt *plaintext* the way Jasypt's ``encrypt.sh`` does (random salt, and IV for AES).

    :param algorithm: ``PBEWithMD5AndDES`` (default) or ``PBEWITHHMACSHA512ANDAES_256``.
    :param output_type: ``base64`` (default) or ``hexadecimal`` (Jasypt's
        ``stringOutputType``).
    :returns: the bare token; wrap it as ``ENC(token)`` in a configuration file.

    >>> len(decrypt(encrypt("pw", "k", algorithm="PBEWITHHMACSHA512ANDAES_256"),
    ...             "k", algorithm="PBEWITHHMACSHA512ANDAES_256"))
    2
    """
    scheme = _scheme(algorithm)
    _check_iterations(iterations)
    key_bytes = _key_bytes(key)
    data = plaintext.encode("utf-8")
    pad = scheme.block - len(data) % scheme.block
    data += bytes([pad]) * pad
    salt = os.urandom(scheme.salt_size)
    iv = os.urandom(scheme.iv_size)
    cipher = _cipher(scheme, key_bytes, salt, iv, iterations)
    enc = cipher.encryptor()
    raw = salt + iv + enc.update(data) + enc.finalize()
    return _encode(raw, output_type)


def decrypt(
    token: str,
    key: str,
    *,
    algorithm: str = DEFAULT_ALGORITHM,
    iterations: int = DEFAULT_ITERATIONS,
    input_type: str = "base64",
) -> str:
    """Decrypt a Jasypt token (the text inside ``ENC(...)``).

    :raises SecretError: the token is malformed, or the key or algorithm is wrong.

    >>> decrypt(encrypt("pw", "k"), "k")
    'pw'
    """
    scheme = _scheme(algorithm)
    _check_iterations(iterations)
    key_bytes = _key_bytes(key)
    raw = _decode(token.strip(), input_type)
    head = scheme.salt_size + scheme.iv_size
    body_len = len(raw) - head
    if body_len <= 0 or body_len % scheme.block:
        raise SecretError(
            f"the encrypted value has the wrong length for {scheme.name} ({len(raw)} bytes; "
            f"expected {head} + a multiple of {scheme.block}): was it made with another "
            "algorithm? Set the algorithm (RWSPLIT_ENCRYPTION_ALGORITHM) to match"
        )
    salt, iv, body = raw[: scheme.salt_size], raw[scheme.salt_size : head], raw[head:]
    cipher = _cipher(scheme, key_bytes, salt, iv, iterations)
    dec = cipher.decryptor()
    data = dec.update(body) + dec.finalize()
    pad = data[-1]
    if not 1 <= pad <= scheme.block or data[-pad:] != bytes([pad]) * pad:
        raise _wrong_key(scheme)
    try:
        return data[:-pad].decode("utf-8")
    except UnicodeDecodeError:
        raise _wrong_key(scheme) from None


def _wrong_key(scheme: _Scheme) -> SecretError:
    return SecretError(
        f"cannot decrypt the value with {scheme.name}: the key is wrong, or the value was "
        "encrypted with another algorithm or iteration count"
    )


def _encode(raw: bytes, output_type: str) -> str:
    kind = output_type.lower()
    if kind == "base64":
        return base64.b64encode(raw).decode("ascii")
    if kind == "hexadecimal":
        return raw.hex().upper()
    raise SecretError(f"output type must be 'base64' or 'hexadecimal', got {output_type!r}")


def _decode(token: str, input_type: str) -> bytes:
    kind = input_type.lower()
    try:
        if kind == "base64":
            return base64.b64decode(token, validate=True)
        if kind == "hexadecimal":
            return bytes.fromhex(token)
    except (binascii.Error, ValueError):
        raise SecretError(f"the encrypted value is not valid {kind} text") from None
    raise SecretError(f"input type must be 'base64' or 'hexadecimal', got {input_type!r}")


# ---------------------------------------------------------------------------------- ENC(...)


def is_encrypted(value: object) -> bool:
    """True for a Jasypt ``ENC(...)`` value.

    >>> is_encrypted("ENC(abc=)"), is_encrypted("plain")
    (True, False)
    """
    return isinstance(value, str) and _ENC.match(value.strip()) is not None


def looks_encrypted(value: object) -> bool:
    """True for a value meant as ``ENC(...)``, well formed or not.

    A value that starts with ``ENC(`` but lost its ``)`` (cut by an editor, a shell, a
    line continuation) must fail, not be taken for a literal password.

    >>> looks_encrypted("ENC(abc"), is_encrypted("ENC(abc")
    (True, False)
    """
    return isinstance(value, str) and value.strip().startswith(_ENC_PREFIX)


@dataclass(frozen=True, slots=True)
class EncryptionKey:
    """A decryption key and the algorithm of the ``ENC(...)`` values it opens.

    ``repr`` never shows the key.

    >>> EncryptionKey("k3y", source="RWSPLIT_ENCRYPTION_KEY")
    EncryptionKey(source='RWSPLIT_ENCRYPTION_KEY', algorithm='PBEWithMD5AndDES')
    """

    key: str
    source: str = "argument"
    """Where the key came from (an environment variable's name or a file), for messages."""
    algorithm: str = DEFAULT_ALGORITHM
    iterations: int = DEFAULT_ITERATIONS

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithm", _scheme(self.algorithm).name)
        _check_iterations(self.iterations)

    def __repr__(self) -> str:
        return f"EncryptionKey(source={self.source!r}, algorithm={self.algorithm!r})"


def decrypt_value(value: str, key: EncryptionKey | str | None, *, where: str = "value") -> str:
    """*value* itself, or its plaintext when it is ``ENC(...)``.

    :param where: names the value in error messages (``"db.properties: db.cloud.password"``).
    :raises SecretError: the value is encrypted but there is no key, or the key is wrong, or
        it starts with ``ENC(`` without its closing ``)``.

    >>> decrypt_value("plain", None)
    'plain'
    """
    match = _ENC.match(value.strip())
    if match is None:
        if looks_encrypted(value):
            # The value itself is not shown: it may be a plaintext password after all.
            raise SecretError(
                f"{where} starts with ENC( but does not end with ')': the ENC(...) value is "
                "malformed (cut short?); copy the whole ENC(...) value again"
            )
        return value
    if key is None:
        raise SecretError(
            f"{where} is encrypted (ENC(...)) but no decryption key was given: set "
            f"{KEY_ENV_VARS[0]} or {KEY_FILE_ENV_VAR} (or {KEY_ENV_VARS[1]}), "
            "or pass encryption_key= / encryption_key_file="
        )
    if isinstance(key, str):
        key = EncryptionKey(key)
    try:
        return decrypt(match["body"], key.key, algorithm=key.algorithm, iterations=key.iterations)
    except SecretError as exc:
        raise SecretError(f"{where}: {exc} (key from {key.source})") from None


# ---------------------------------------------------------------------------------- key sources


def read_key_file(path: str | os.PathLike[str]) -> str:
    """The key stored in *path* (one line; the trailing newline is dropped).

    :raises SecretError: the file cannot be read or is empty.

    >>> import os, pathlib, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name) / "rwsplit.key"
    >>> _ = path.write_text("k3y\\n"); os.chmod(path, 0o600)
    >>> read_key_file(path)
    'k3y'
    >>> tmp.cleanup()
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SecretError(f"cannot read the encryption key file {p}: {reason}") from None
    key = text.rstrip("\r\n")
    if not key:
        raise SecretError(f"the encryption key file {p} is empty")
    if "\n" in key:
        raise SecretError(
            f"the encryption key file {p} holds more than one line; put only the key in it"
        )
    try:
        if p.stat().st_mode & 0o077:
            log.warning("encryption key file %s is readable by other users; chmod 600 it", p)
    except OSError:
        pass
    return key


def load_key(
    *,
    key: str | None = None,
    key_file: str | os.PathLike[str] | None = None,
    algorithm: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> EncryptionKey | None:
    """Find the key for ``ENC(...)`` values; ``None`` when there is none.

    Precedence, first found wins: *key*, *key_file*, ``$RWSPLIT_ENCRYPTION_KEY``,
    ``$RWSPLIT_ENCRYPTION_KEY_FILE``, ``$JASYPT_ENCRYPTOR_PASSWORD``. The algorithm is
    *algorithm*, else ``$RWSPLIT_ENCRYPTION_ALGORITHM``, else ``$JASYPT_ENCRYPTOR_ALGORITHM``,
    else ``PBEWithMD5AndDES``.

    >>> load_key(environ={"RWSPLIT_ENCRYPTION_KEY": "k"})
    EncryptionKey(source='RWSPLIT_ENCRYPTION_KEY', algorithm='PBEWithMD5AndDES')
    """
    env = os.environ if environ is None else environ
    if algorithm is None:
        algorithm = next((env[v] for v in ALGORITHM_ENV_VARS if env.get(v)), DEFAULT_ALGORITHM)
    algorithm = _scheme(algorithm).name
    if key is not None:
        return EncryptionKey(key, "encryption_key argument", algorithm)
    if key_file is not None:
        return EncryptionKey(read_key_file(key_file), f"key file {key_file}", algorithm)
    if env.get(KEY_ENV_VARS[0]):
        return EncryptionKey(env[KEY_ENV_VARS[0]], KEY_ENV_VARS[0], algorithm)
    if env.get(KEY_FILE_ENV_VAR):
        path = env[KEY_FILE_ENV_VAR]
        return EncryptionKey(
            read_key_file(path), f"key file {path} (${KEY_FILE_ENV_VAR})", algorithm
        )
    if env.get(KEY_ENV_VARS[1]):
        return EncryptionKey(env[KEY_ENV_VARS[1]], KEY_ENV_VARS[1], algorithm)
    return None
