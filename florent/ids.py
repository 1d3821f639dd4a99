"""Object ids: 24 lowercase hex characters, the ObjectId shape the product uses."""

import os
import re
import time

OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def new_object_id() -> str:
    """A 4-byte big-endian seconds timestamp and 8 random bytes.

    The timestamp prefix keeps ids roughly time-ordered, which keeps B-tree
    inserts local; 64 random bits make collisions within a second negligible.
    """
    return int(time.time()).to_bytes(4, "big").hex() + os.urandom(8).hex()


def is_object_id(value: str) -> bool:
    return OBJECT_ID.fullmatch(value) is not None
