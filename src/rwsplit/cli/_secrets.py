"""``rwsplit encrypt`` / ``rwsplit decrypt``: Jasypt's CLI, in rwsplit.

Both accept Jasypt's own argument style (``input="..." password="..." algorithm=...
verbose=true|false``) as well as ordinary options (``--input``, ``--password`` ...), and print
Jasypt's layout: the ``----ENVIRONMENT-----`` / ``----ARGUMENTS-----`` / ``----OUTPUT-----``
blocks when verbose (Jasypt's default), the bare result otherwise. Unlike Jasypt, the key (and
the plaintext given to ``encrypt``) is masked in the ARGUMENTS block, and failures exit 1.
"""

from __future__ import annotations

import argparse
import platform
import sys
from dataclasses import dataclass
from typing import Any

from ..config import secrets
from ..errors import SecretError

__all__ = ["register"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_JASYPT_ARGS = (
    "input",
    "password",
    "verbose",
    "algorithm",
    "keyObtentionIterations",
    "saltGeneratorClassName",
    "providerName",
    "providerClassName",
    "stringOutputType",
    "ivGeneratorClassName",
)
_RANDOM_SALT = "org.jasypt.salt.RandomSaltGenerator"
_RANDOM_IV = "org.jasypt.iv.RandomIvGenerator"
_NO_IV = "org.jasypt.iv.NoIvGenerator"
_MASK = "******"


class _UsageError(Exception):
    pass


@dataclass
class _Request:
    input: str
    key: str
    algorithm: str
    iterations: int
    output_type: str
    verbose: bool
    shown: list[tuple[str, str]]
    """The ARGUMENTS block: (name, value as shown)."""


def _bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "yes", "on", "1"):
        return True
    if v in ("false", "no", "off", "0"):
        return False
    raise _UsageError(f"Bad argument: {name}={value} (expected true or false)")


def _jasypt_pairs(words: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not value or name not in _JASYPT_ARGS:
            raise _UsageError(
                f"Bad argument: {word}; arguments are name=value with name one of "
                + ", ".join(_JASYPT_ARGS)
            )
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]  # as Jasypt does, for quotes that reached it
        if name in pairs:
            raise _UsageError(f"Bad argument: {name} given twice")
        pairs[name] = value
    return pairs


def _request(args: argparse.Namespace, decrypting: bool) -> _Request:
    pairs = _jasypt_pairs(args.jasypt_args)
    options = {
        "input": args.input,
        "password": args.password,
        "algorithm": args.algorithm,
        "keyObtentionIterations": args.iterations,
        "stringOutputType": args.output_type,
        "ivGeneratorClassName": args.iv_generator,
        "verbose": args.jasypt_verbose,
    }
    for name, value in options.items():
        if value is not None:
            if name in pairs:
                raise _UsageError(f"{name} is given both as {name}=... and as an option")
            pairs[name] = value if isinstance(value, str) else str(value).lower()
    # Jasypt-style calls default to Jasypt's verbose output; option-style calls to bare.
    verbose = _bool("verbose", pairs["verbose"]) if "verbose" in pairs else bool(args.jasypt_args)
    for unsupported in ("providerName", "providerClassName"):
        if unsupported in pairs:
            raise _UsageError(f"{unsupported} is not supported: rwsplit has its own cipher code")
    if pairs.get("saltGeneratorClassName", _RANDOM_SALT) != _RANDOM_SALT:
        raise _UsageError(f"saltGeneratorClassName: only {_RANDOM_SALT} is supported")

    text = pairs.get("input")
    if text is None:
        raise _UsageError('input is required: input="..." or --input TEXT (- reads stdin)')
    if text == "-":
        text = sys.stdin.read().rstrip("\r\n")
    if decrypting and text.strip().startswith("ENC(") and text.strip().endswith(")"):
        text = text.strip()[4:-1]  # the value as it stands in a configuration file
    algorithm = pairs.get("algorithm", secrets.DEFAULT_ALGORITHM)
    try:
        scheme = secrets._scheme(algorithm)
    except SecretError as exc:
        raise _UsageError(str(exc)) from None
    iv = pairs.get("ivGeneratorClassName")
    expected_iv = _RANDOM_IV if scheme.iv_size else _NO_IV
    if iv is not None and iv != expected_iv:
        raise _UsageError(
            f"ivGeneratorClassName: {scheme.name} is supported with {expected_iv} only"
        )
    try:
        iterations = int(pairs.get("keyObtentionIterations", secrets.DEFAULT_ITERATIONS))
    except ValueError:
        iterations = 0
    if iterations < 1:
        raise _UsageError("keyObtentionIterations must be a positive integer")
    output_type = pairs.get("stringOutputType", "base64")
    if output_type.lower() not in ("base64", "hexadecimal"):
        raise _UsageError("stringOutputType must be base64 or hexadecimal")

    key = pairs.get("password")
    if key is None:
        found = secrets.load_key(key_file=args.key_file)
        if found is None:
            raise _UsageError(
                "no key: give password=..., --password, --key-file FILE, or set "
                f"{secrets.KEY_ENV_VARS[0]} / {secrets.KEY_FILE_ENV_VAR} / "
                f"{secrets.KEY_ENV_VARS[1]}"
            )
        key = found.key
    elif args.key_file is not None:
        raise _UsageError("give the key once: password=... / --password, or --key-file")

    shown = []
    for name, value in pairs.items():
        if name == "password" or (name == "input" and not decrypting):
            value = _MASK
        shown.append((name, value))
    return _Request(text, key, scheme.name, iterations, output_type, verbose, shown)


# Jasypt's CLIUtils prints each block with println("\n----NAME----\n") and ends it with
# println("\n"); the same calls give the same bytes here.


def _print_head(request: _Request) -> None:
    from .. import __version__

    print("\n----ENVIRONMENT-----------------\n")
    runtime = f"{platform.python_implementation()} {platform.python_version()} rwsplit"
    print(f"Runtime: {runtime} {__version__} ")
    print("\n")
    print("\n----ARGUMENTS-------------------\n")
    for name, value in request.shown:
        print(f"{name}: {value}")
    print("\n")


def _print_output(result: str) -> None:
    print("\n----OUTPUT----------------------\n")
    print(result)
    print("\n")


def _print_error(message: str, verbose: bool) -> None:
    if verbose:
        sys.stdout.flush()  # the blocks above come first, as in Jasypt
        print("\n----ERROR-----------------------\n", file=sys.stderr)
        print(message, file=sys.stderr)
        print("\n", file=sys.stderr)
    else:
        print(f"ERROR: {message}", file=sys.stderr)


def _run(args: argparse.Namespace, decrypting: bool) -> int:
    try:
        request = _request(args, decrypting)
    except _UsageError as exc:
        _print_error(str(exc), verbose=False)
        return EXIT_USAGE
    if request.verbose:
        _print_head(request)
    try:
        if decrypting:
            result = secrets.decrypt(
                request.input,
                request.key,
                algorithm=request.algorithm,
                iterations=request.iterations,
                input_type=request.output_type,
            )
        else:
            result = secrets.encrypt(
                request.input,
                request.key,
                algorithm=request.algorithm,
                iterations=request.iterations,
                output_type=request.output_type,
            )
    except SecretError as exc:
        _print_error(str(exc), request.verbose)
        return EXIT_FAILED
    if request.verbose:
        _print_output(result)
    else:
        print(result)
    return EXIT_OK


def _cmd_encrypt(args: argparse.Namespace) -> int:
    return _run(args, decrypting=False)


def _cmd_decrypt(args: argparse.Namespace) -> int:
    return _run(args, decrypting=True)


_EPILOG = """\
Jasypt style:  rwsplit {cmd} input="{example}" password="$KEY" [algorithm=...] \
[verbose=false]
Option style:  rwsplit {cmd} --input "{example}" [--key-file FILE] [--algorithm ...] \
[--verbose]

The key comes from password= / --password, else --key-file, else $RWSPLIT_ENCRYPTION_KEY,
$RWSPLIT_ENCRYPTION_KEY_FILE, $JASYPT_ENCRYPTOR_PASSWORD. Algorithms: PBEWithMD5AndDES
(Jasypt's default) and PBEWITHHMACSHA512ANDAES_256 (Jasypt's RandomIvGenerator; give Jasypt
ivGeneratorClassName=org.jasypt.iv.RandomIvGenerator). Exit codes: 0 ok, 1 cannot
encrypt/decrypt (wrong key ...), 2 bad arguments."""


def _add(sub: Any, name: str, decrypting: bool) -> None:
    verb = "decrypt" if decrypting else "encrypt"
    example = "S3DQHsQy05+sQD6y+sYmwssTJI2Ebhot" if decrypting else "db-password"
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=f"{verb} a value like Jasypt's {name}.sh (for password=ENC(...) settings)",
        description=(
            f"{verb.capitalize()} a value the way Jasypt's CLI does, with its arguments and "
            "output layout."
        ),
        epilog=_EPILOG.format(cmd=name, example=example),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "jasypt_args",
        nargs="*",
        metavar="NAME=VALUE",
        help="Jasypt CLI arguments: input, password, algorithm, verbose, "
        "keyObtentionIterations, stringOutputType, ivGeneratorClassName",
    )
    what = (
        "the encrypted text (ENC(...) or what is inside)" if decrypting else "the text to encrypt"
    )
    p.add_argument("--input", metavar="TEXT", help=f"{what}; - reads one line from stdin")
    p.add_argument(
        "--password",
        metavar="KEY",
        help="the encryption key (visible to other users in ps: prefer --key-file or "
        "$RWSPLIT_ENCRYPTION_KEY)",
    )
    p.add_argument("--key-file", metavar="FILE", help="read the encryption key from FILE")
    p.add_argument(
        "--algorithm",
        metavar="NAME",
        help="PBEWithMD5AndDES (default) or PBEWITHHMACSHA512ANDAES_256",
    )
    p.add_argument("--iterations", type=int, metavar="N", help="key obtention iterations (1000)")
    p.add_argument(
        "--output-type",
        choices=["base64", "hexadecimal"],
        help="text form of the encrypted value (default base64)",
    )
    p.add_argument("--iv-generator", metavar="CLASS", help=argparse.SUPPRESS)
    p.add_argument(
        "--verbose",
        dest="jasypt_verbose",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print Jasypt's ENVIRONMENT / ARGUMENTS / OUTPUT blocks (default: on in Jasypt "
        "style, off in option style)",
    )
    p.set_defaults(func=_cmd_decrypt if decrypting else _cmd_encrypt)


def register(sub: Any) -> None:
    """Add ``encrypt`` and ``decrypt`` to the ``rwsplit`` command."""
    _add(sub, "encrypt", decrypting=False)
    _add(sub, "decrypt", decrypting=True)
