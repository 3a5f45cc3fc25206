#!/usr/bin/env python3
"""Reference hashes for the sample workload, computed independently with Python's hashlib.

Usage: python3 tests/hashes.py N [N ...]
Prints one JSON object per line: {"input": n, "pbkdf2Hash": "...", "scryptHash": "..."}.

PBKDF2-HMAC-SHA512: password b"complex_password", salt f"unique_salt_{n}", 1000 iterations, 64 bytes.
scrypt: same password and salt, N = 2 ** ((n % 14) + 1), r = 8, p = 1, 64 bytes.
Exits 2 with the reason on stderr when this Python's hashlib has no scrypt.
"""
import hashlib
import json
import sys

PASSWORD = b"complex_password"


def main(argv):
    if len(argv) < 2:
        print("usage: hashes.py N [N ...]", file=sys.stderr)
        return 2
    if not hasattr(hashlib, "scrypt"):
        print(
            "python3's hashlib has no scrypt (it needs Python built against OpenSSL >= 1.1)",
            file=sys.stderr,
        )
        return 2
    for arg in argv[1:]:
        n = int(arg)
        salt = f"unique_salt_{n}".encode()
        pbkdf2 = hashlib.pbkdf2_hmac("sha512", PASSWORD, salt, 1000, dklen=64)
        scrypt = hashlib.scrypt(
            PASSWORD, salt=salt, n=2 ** ((n % 14) + 1), r=8, p=1, dklen=64, maxmem=64 * 1024 * 1024
        )
        print(json.dumps({"input": n, "pbkdf2Hash": pbkdf2.hex(), "scryptHash": scrypt.hex()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
