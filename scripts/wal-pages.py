#!/usr/bin/env python3
"""Which tables and indexes a SQLite commit writes, from a copy of the WAL.

    scripts/wal-pages.py DIR

DIR holds a copy of `loopgate.db` and `loopgate.db-wal` taken while the
server wrote (stop it with `kill -STOP`, copy both files, `kill -CONT`).
Prints the WAL's frames per commit, and per table or index how many pages a
commit wrote on average: every page a commit changes costs a WAL frame (two
`pwrite`s) and, later, a write in the checkpoint. Needs Python's sqlite3
with the dbstat table (Debian's has it). The database copy is opened read
only; the WAL is read as bytes.
"""
import collections
import sqlite3
import struct
import sys

def main(folder: str) -> None:
    db = f"{folder}/loopgate.db"
    with open(db + "-wal", "rb") as f:
        wal = f.read()
    _, _, page, _, salt1, salt2, _, _ = struct.unpack(">IIIIIIII", wal[:32])
    frames, at = [], 32
    while at + 24 + page <= len(wal):
        number, commit, s1, s2 = struct.unpack(">IIII", wal[at:at + 16])
        if (s1, s2) != (salt1, salt2):
            break
        frames.append((number, commit))
        at += 24 + page
    # The WAL is not applied: the names come from the database file's pages.
    con = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    names = dict(con.execute("SELECT pageno, name FROM dbstat"))
    commits = max(1, sum(1 for _, commit in frames if commit))
    print(f"{len(frames)} frames, {commits} commits, {len(frames) / commits:.1f} pages a commit")
    per = collections.Counter(names.get(number, "(new page)") for number, _ in frames)
    for name, n in per.most_common():
        print(f"{n / commits:7.2f}  {name}")

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: scripts/wal-pages.py DIR (a copy of loopgate.db and loopgate.db-wal)")
    main(sys.argv[1])
