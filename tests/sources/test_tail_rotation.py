"""Source tail through every rotation, with an application writing numbered lines at a steady
rate and the pipeline SIGKILLed at a random moment and restarted: no number may be missing;
duplicates are counted, and allowed only after a kill."""

from __future__ import annotations

import os
import time

from helpers import wait_for
from tail_peers import Tail, Writer, logrotate, pause


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_logrotate_create_with_a_kill(tmp_path):
    log = tmp_path / "app.log"
    writer = Writer(log)
    tail = Tail(tmp_path, f"path: {log}, rotated: '{log}.*', read_from_head: true").start()
    pause()
    logrotate(tmp_path, log, "create", f"kill -HUP {writer.proc.pid}")
    pause()
    tail.kill()
    pause(0.1, 0.5)
    tail.start()
    pause()
    logrotate(tmp_path, log, "create", f"kill -HUP {writer.proc.pid}")
    pause()
    n = writer.stop()
    assert (tmp_path / "app.log.2").exists()
    tail.wait_for_all(n)
    print(f"create: {n} lines, {tail.duplicates()} duplicates after {tail.kills} kill")
    tail.stop()


def test_logrotate_create_without_kill_gives_no_duplicates(tmp_path):
    log = tmp_path / "app.log"
    writer = Writer(log)
    tail = Tail(tmp_path, f"path: {log}, read_from_head: true").start()
    for _ in range(3):
        pause()
        logrotate(tmp_path, log, "create", f"kill -HUP {writer.proc.pid}")
    pause()
    n = writer.stop()
    tail.wait_for_all(n)
    assert tail.duplicates() == 0
    tail.stop()


def test_logrotate_copytruncate_with_a_kill(tmp_path):
    # copytruncate loses what the application writes between the copy and the truncation,
    # whoever reads: what must come out is every line that is in one of the files
    log = tmp_path / "app.log"
    writer = Writer(log)
    tail = Tail(tmp_path, f"path: {log}, rotated: '{log}.*', read_from_head: true").start()
    pause()
    logrotate(tmp_path, log, "copytruncate")
    pause()
    tail.kill()
    pause(0.1, 0.5)
    tail.start()
    pause()
    logrotate(tmp_path, log, "copytruncate")
    pause()
    writer.stop()
    in_files = {int(line.split()[0]) for p in tmp_path.glob("app.log*") for line in p.read_text().splitlines()}
    assert wait_for(lambda: in_files <= set(tail.numbers()), timeout=30), \
        f"lost: {sorted(in_files - set(tail.numbers()))[:10]}"
    print(f"copytruncate: {len(in_files)} lines, {tail.duplicates()} duplicates after {tail.kills} kill")
    tail.stop()


def test_copytruncate_reads_the_rest_from_the_copy_without_duplicates(tmp_path):
    # the pipeline is behind when the truncation comes (a stalled second): the lines it had
    # not read yet are only in the copy
    log = tmp_path / "app.log"
    log.write_text("".join(f"{i:08d} old\n" for i in range(2000)))
    tail = Tail(tmp_path, f"path: {log}, rotated: '{log}.*', read_from_head: true").start()
    tail.wait_for_all(2000)
    os.kill(tail.pid(), 19)  # SIGSTOP: behind the writer
    with open(log, "a") as f:
        f.write("".join(f"{i:08d} more\n" for i in range(2000, 3000)))
    logrotate(tmp_path, log, "copytruncate")
    with open(log, "a") as f:
        f.write("".join(f"{i:08d} new\n" for i in range(3000, 3100)))
    os.kill(tail.pid(), 18)  # SIGCONT
    tail.wait_for_all(3100)
    assert tail.duplicates() == 0
    tail.stop()


def test_delete_and_recreate_with_the_same_inode(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("".join(f"{i:08d} first\n" for i in range(100)))
    tail = Tail(tmp_path, f"path: {log}, read_from_head: true").start()
    tail.wait_for_all(100)
    tail.stop()
    # while it is stopped the file is deleted and a new one takes the same inode number:
    # the fingerprint tells them apart (proven, not assumed: retried until the inode is reused)
    old = log.stat().st_ino
    for attempt in range(200):
        log.unlink()
        keep = [tmp_path / f"filler{attempt}-{i}" for i in range(3)] if attempt % 2 else []
        for k in keep:  # vary which inode the next create takes
            k.write_text("x")
        log.write_text("".join(f"{i:08d} second\n" for i in range(100, 300)))
        for k in keep:
            k.unlink()
        if log.stat().st_ino == old:
            break
    else:
        raise AssertionError("the filesystem never reused the inode")
    tail.start()
    tail.wait_for_all(300)
    assert tail.duplicates() == 0
    tail.stop()


def test_delete_and_recreate_while_running(tmp_path):
    log = tmp_path / "app.log"
    writer = Writer(log)
    tail = Tail(tmp_path, f"path: {log}, read_from_head: true").start()
    pause()
    log.unlink()
    writer.hup()  # the application makes a new file
    pause()
    tail.kill()
    tail.start()
    pause()
    n = writer.stop()
    tail.wait_for_all(n)
    print(f"delete/recreate: {n} lines, {tail.duplicates()} duplicates after {tail.kills} kill")
    tail.stop()


def test_rotated_once_and_twice_while_stopped(tmp_path):
    log = tmp_path / "app.log"
    writer = Writer(log)
    tail = Tail(tmp_path, f"path: {log}, rotated: '{log}.*', read_from_head: true").start()
    pause()
    tail.kill()
    logrotate(tmp_path, log, "create", f"kill -HUP {writer.proc.pid}")
    pause()
    tail.start()
    pause()
    tail.stop()
    for _ in range(2):  # twice: the file in between was written and rotated unseen
        logrotate(tmp_path, log, "create", f"kill -HUP {writer.proc.pid}")
        pause()
    tail.start()
    pause()
    n = writer.stop()
    tail.wait_for_all(n)
    print(f"rotated while stopped: {n} lines, {tail.duplicates()} duplicates after {tail.kills} kill")
    tail.stop()


def test_truncated_while_stopped_and_written_past_the_old_offset(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("".join(f"{i:08d} before\n" for i in range(100)))
    tail = Tail(tmp_path, f"path: {log}, read_from_head: true").start()
    tail.wait_for_all(100)
    tail.stop()
    with open(log, "r+") as f:  # same inode, new content longer than what was read
        f.truncate(0)
        f.write("".join(f"{i:08d} after!\n" for i in range(100, 400)))
    tail.start()
    tail.wait_for_all(400)
    assert tail.duplicates() == 0
    tail.stop()


def test_symlink_switched_to_a_new_target(tmp_path):
    a, b, link = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "current.log"
    a.write_text("".join(f"{i:08d} a\n" for i in range(50)))
    link.symlink_to(a)
    tail = Tail(tmp_path, f"path: {link}, read_from_head: true").start()
    tail.wait_for_all(50)
    b.write_text("".join(f"{i:08d} b\n" for i in range(50, 80)))
    tmp = tmp_path / "new.link"
    tmp.symlink_to(b)
    tmp.rename(link)
    with open(a, "a") as f:  # written after the switch: still read (rotate_wait)
        f.write("".join(f"{i:08d} a\n" for i in range(80, 90)))
    tail.wait_for_all(90)
    assert tail.duplicates() == 0
    tail.stop()


def test_deleted_while_open_is_read_to_its_end_then_closed(tmp_path):
    tail = Tail(tmp_path, f"path: '{tmp_path}/logs/*.log'")
    (tmp_path / "logs").mkdir()
    tail.start()
    assert wait_for(lambda: (tail.dir / "state" / "t.positions").exists())
    pid = tail.pid()
    # a first file and its line out: the sink's output is open, the baseline is steady
    (tmp_path / "logs" / "seed.log").write_text(f"{0:08d} seed\n")
    tail.wait_for_all(1)
    time.sleep(0.5)
    before = _fds(pid)
    n = 1
    for round in range(3):
        files = [tmp_path / "logs" / f"{round}-{i}.log" for i in range(20)]
        for p in files:
            p.write_text("".join(f"{n + j:08d} x\n" for j in range(10)))
            n += 10
        assert wait_for(lambda: _fds(pid) >= before + 20), "the new files were not opened"
        handles = [open(p, "a") for p in files]  # the application still writes after the delete
        for p in files:
            p.unlink()
        for h in handles:
            h.write(f"{n:08d} after delete\n")
            n += 1
            h.close()
        tail.wait_for_all(n)
        assert wait_for(lambda: _fds(pid) == before, timeout=10), f"{_fds(pid) - before} descriptors leaked"
    assert tail.duplicates() == 0
    tail.stop()
