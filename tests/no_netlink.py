"""Run a command where the kernel refuses netlink sockets, as under systemd's
`RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX` or a strict container seccomp profile:
`python3 tests/no_netlink.py COMMAND ARGS...`.

It installs the same kind of seccomp filter systemd does (socket(AF_NETLINK, ...) fails with
EAFNOSUPPORT, every other system call is untouched) and execs the command, which inherits
the filter. Only the system call numbers of x86_64 and aarch64 are known here; elsewhere
it exits 77 so a test can skip.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import struct
import sys

UNSUPPORTED = 77
#: machine -> (AUDIT_ARCH_*, __NR_socket)
ARCHES = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
LD_ABS_W = 0x20  # BPF_LD | BPF_W | BPF_ABS
JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
RET_K = 0x06  # BPF_RET | BPF_K
# struct seccomp_data: int nr, __u32 arch, __u64 instruction_pointer, __u64 args[6]
NR, ARCH, ARG0 = 0, 4, 16


def program(arch: int, nr_socket: int) -> list[tuple[int, int, int, int]]:
    allow = (RET_K, 0, 0, SECCOMP_RET_ALLOW)
    refuse = (RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT)
    # jumps count instructions to skip: a mismatch skips to the final `allow`
    return [(LD_ABS_W, 0, 0, ARCH), (JEQ_K, 0, 5, arch),
            (LD_ABS_W, 0, 0, NR), (JEQ_K, 0, 3, nr_socket),
            (LD_ABS_W, 0, 0, ARG0), (JEQ_K, 0, 1, socket.AF_NETLINK),
            refuse, allow]


def install() -> None:
    arch, nr_socket = ARCHES[platform.machine()]
    code = program(arch, nr_socket)
    filters = b"".join(struct.pack("=HBBI", *op) for op in code)
    buf = ctypes.create_string_buffer(filters, len(filters))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    prog = Fprog(len(code), ctypes.addressof(buf))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0):
        raise OSError(ctypes.get_errno(), "installing the seccomp filter")


if __name__ == "__main__":
    if platform.machine() not in ARCHES:
        sys.exit(UNSUPPORTED)
    try:
        install()
    except OSError as e:
        print(f"no_netlink: {e}", file=sys.stderr)
        sys.exit(UNSUPPORTED)
    os.execvp(sys.argv[1], sys.argv[1:])
