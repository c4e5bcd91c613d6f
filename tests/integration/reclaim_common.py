"""What the reclaim tests (test_kvmm_reclaim*.py, issue 7) share: booting kvmm with a QMP socket and
memory stats in its log, polling x-kvmm-query-memory, the test guest's verify counts, and a
directory for swap files in the build tree (the test host's own disk is small, its /tmp memory)."""
import os
import re
import tempfile
import time
from kvmmtest import BUILD, GUEST_INITRD, TEST_GUEST, Qmp, Vm

MIB = 1 << 20
os.makedirs(os.path.join(BUILD, "tests"), exist_ok=True)
tmp = tempfile.mkdtemp(dir=os.environ.get("KVMM_SWAP_DIR", os.path.join(BUILD, "tests")))


def boot(args, append, timeout=1500, kernel=TEST_GUEST):
    sock = os.path.join(tmp, f"qmp-{time.monotonic_ns()}.sock")
    extra = ["--initrd", GUEST_INITRD] if kernel != TEST_GUEST else []
    vm = Vm(["-m", "1024M", "--qmp", f"unix:{sock}", "--mem-stats-interval", "15", "--kernel", kernel,
             "--append", append] + extra + args, timeout=timeout)
    return vm, Qmp(sock)


def query(vm, q):
    vm.drain()
    return q.cmd("x-kvmm-query-memory")["return"]


def wait_for(vm, q, pred, timeout):
    end = time.monotonic() + timeout
    st = query(vm, q)
    while not pred(st) and time.monotonic() < end:
        time.sleep(1)
        st = query(vm, q)
    return st


def verifies(vm, n):
    return [int(m) for m in re.findall(r"KVMM test=verify pages=\d+ mismatches=(\d+)", vm.text())][:n]
