/*
 * /init for armras Linux guests: a static AArch64 musl program.
 *
 * Always: mounts /proc, /sys and devtmpfs on /dev (when the kernel has them)
 * and prints "INIT-OK uptime=<seconds>".
 *
 * With "seatest" on the kernel command line it then runs an mca-recover
 * style Synchronous External Abort test:
 *   1. mmap an anonymous private page, dirty it, find its physical address
 *      through /proc/self/pagemap and print
 *         SEATEST victim va=0x... PADDR=0x...
 *      so the host (console trigger regex "PADDR=(0x[0-9a-f]+)") poisons it;
 *   2. sleep ~200 ms to let the host do so;
 *   3. read the page again with a SIGBUS handler (SA_SIGINFO) installed and
 *      print "SEATEST SIGBUS si_code=N (BUS_MCEERR_AR=4) si_addr=0x..." or
 *      "SEATEST no SIGBUS ...";
 *   4. print the HardwareCorrupted: line of /proc/meminfo and "SEATEST DONE".
 *
 * "seatest_cpu=N" pins the test to CPU N first (sched_setaffinity) and the victim
 * line ends with " cpu=N" (sched_getcpu), so an SMP guest takes the SEA on CPU N.
 *
 * With "smptest" it prints what the kernel says about its CPUs, then takes CPU 1
 * offline and back online through sysfs (PSCI CPU_OFF / CPU_ON underneath):
 *      SMPTEST processors=<"processor" lines in /proc/cpuinfo> online=<cpu/online>
 *      SMPTEST cpu1 offline online=<...>   /   SMPTEST cpu1 online online=<...>
 *
 * With "bustest" it maps physical 0x0b000000 (nothing answers there on the board)
 * through /dev/mem and reads and then writes it; each access must end in SIGBUS with
 * si_addr = the accessed virtual address (a genuine external abort: FAR valid):
 *      BUSTEST read va=0x... SIGBUS si_code=N si_addr=0x...
 *      BUSTEST write va=0x... SIGBUS si_code=N si_addr=0x...
 *
 * With "einjtest=uc|ce|fatal" it injects a memory error into a page of its own through
 * the platform's EINJ table with Debian's own einj.ko (packed into the initramfs with
 * `python -m armras.guests.initramfs --kernel K --module einj`):
 *   1. loads einj.ko and what /lib/modules/<release>/modules.dep says it depends on
 *      (finit_module, with the "<module>.<param>=<value>" words of the kernel command line
 *      as its parameters, as modprobe passes them: "EINJTEST parameters ..."), mounts
 *      debugfs and prints each line of
 *      apei/einj/available_error_type as "EINJTEST available: <line>";
 *   2. maps and dirties a page, finds its physical address (pagemap) and writes
 *      error_type (uc 0x10, ce 0x8, fatal 0x20), param1 (the address), param2
 *      (0xfffffffffffff000, one page) and error_inject, printing
 *         EINJTEST inject type=0x10 PADDR=0x...
 *         EINJTEST error_inject ok   /   EINJTEST error_inject failed: <errno text>
 *   3. uc: reads the page back as seatest does ("EINJTEST SIGBUS si_code=N ...");
 *      ce: waits 500 ms for the kernel's report; fatal: the kernel panics first.
 *   "einjtest=ce,uc" runs the modes in turn (a fresh page each), then "EINJTEST DONE".
 *
 * With "armras_bench" on the kernel command line it runs user-space workloads
 * (benchmarks/bench_userspace.py), each timed with clock_gettime(CLOCK_MONOTONIC)
 * and reported as one line
 *      BENCH <name> n=<iterations> ns=<elapsed nanoseconds>
 * getpid (system calls), pagefault (fresh anonymous pages: mmap, write one
 * byte per page, munmap), fork (fork + _exit + waitpid) and forkexec (fork +
 * execve of /init itself with BENCH_CHILD_ARG, which exits at once + waitpid),
 * then "BENCH DONE" (or "BENCH ERROR ...").  "armras_bench=D" divides every
 * iteration count by D (quick development runs; the lines always say n=).
 *
 * With "pstoretest" it mounts pstore on /sys/fs/pstore and prints each file there,
 * and the lines of each dmesg-* file that tell why it was written:
 *      PSTORE file=<name> size=<bytes>
 *      PSTORE <name>: <line with "Panic#", "Kernel panic" or "sysrq">
 *      PSTORE files=<n> dmesg=<dmesg files>
 * With "pstore_crash" as well, and no dmesg file yet, it then prints "PSTORE crash" and
 * writes 'c' to /proc/sysrq-trigger: the kernel panics (pstore saves its dmesg) and,
 * with panic=N, resets; the next boot lists the saved dmesg.
 *
 * With "efitest=STEP,..." (an initramfs with Debian's efivarfs.ko and efi-pstore.ko:
 * `python -m armras.guests.initramfs --kernel K --module efivarfs --module efi_pstore`) it
 * loads efivarfs.ko ("EFITEST loaded <path>"), mounts efivarfs on /sys/firmware/efi/efivars
 * ("EFITEST mounted efivarfs") and runs the steps in turn, then prints "EFITEST DONE":
 *   list:   "EFITEST var <Name>-<guid> attr=0x<attributes> size=<data bytes>" per variable
 *           (sorted by file name), then "EFITEST vars=<n>";
 *   write:  creates ArmrasTest-<guid> and ArmrasScratch-<guid> (vendor GUID EFITEST_GUID),
 *           attributes NV|BS|RT and data "armras efitest 1", with one write of both:
 *           "EFITEST wrote <file> attr=0x7 size=16";
 *   read:   "EFITEST read <file> attr=0x<attributes> data=<text>" or "EFITEST read <file> missing"
 *           for both;
 *   delete: clears the immutable flag efivarfs gives a variable it does not know ("EFITEST
 *           chattr -i <file>"), unlinks ArmrasScratch-<guid>: "EFITEST deleted <file>",
 *           "EFITEST gone <file>".
 * With "efipstore" it loads efi-pstore.ko and prints "EFITEST efi_pstore pstore_disable=<N|Y>"
 * (before "pstoretest" mounts pstore; erst_disable or pstore.backend=<name> keeps the ERST
 * out); with "efipstore_clear" as well it then mounts pstore and removes every dmesg-* file
 * there ("EFITEST pstore removed <file>"), which makes the backend erase the record.
 *
 * With "armras_sleep_ms=N" it then prints "SLEEP ms=N", sleeps N ms (so the host can
 * inject while the kernel runs idle, e.g. a record in a polled error source, which the
 * kernel only finds at its next poll) and prints "SLEEP DONE".
 *
 * With "armras_sh=PATH" (an initramfs with a Debian userland: armras initramfs --debian) it
 * runs "/bin/sh PATH" as a child with PATH=/usr/sbin:/usr/bin, waits for it and prints
 * "SH exit=N" (or "SH ERROR ...").  Such a script can run the seatest victim on its own:
 * "/init --seatest [CPU]" (not PID 1) runs the seatest above and exits.
 * With "fwtest" it prints what the firmware tables and UEFI runtime services give
 * Linux: one "FWTEST dmi <file>=<value>" line per /sys/class/dmi/id file it reads,
 * "FWTEST rtc0 name=<driver>", "FWTEST time=<seconds since 1970>"; with
 * "fwtest_settime=S" it then sets /dev/rtc0 to S (ioctl RTC_SET_TIME: rtc-efi calls
 * UEFI SetTime) and reads it back (RTC_RD_TIME: GetTime), printing
 * "FWTEST rtc set=<S>" and "FWTEST rtc read=<YYYY-MM-DDTHH:MM:SS>".
 * With "irqtest" it prints, last (after armras_sleep_ms), each line of /proc/interrupts as
 * "IRQTEST <line>" and then "IRQTEST DONE" (or "IRQTEST ERROR ...").
 *
 * Finally sync() and reboot(RB_POWER_OFF) (PSCI SYSTEM_OFF).  Every failure
 * prints one "INIT ERROR ..." / "SEATEST ERROR ..." line and still powers off.
 *
 * Build: python -m ziglang cc -target aarch64-linux-musl -static -Os -o init init.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <linux/rtc.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef BUS_MCEERR_AR
#define BUS_MCEERR_AR 4
#endif

#define VICTIM_OFFSET 0x100u  /* byte within the page that is poisoned and read back */
#define FILL_BYTE 0x5a
#define ACCESS_TIMEOUT_S 10   /* SIGALRM if the access neither completes nor faults */

/* armras_bench workload sizes, divided by D of armras_bench=D (the host reads n= from the BENCH lines). */
#define BENCH_GETPID_N 200000L
#define BENCH_FAULT_PAGES 50000L
#define BENCH_FAULT_CHUNK 5000L     /* pages mapped at once: 20 MiB, well inside a 512 MiB guest */
#define BENCH_FORK_N 200L
#define BENCH_FORKEXEC_N 200L
#define BENCH_CHILD_ARG "--armras-bench-child"  /* argv[1] of the exec'd /init: exit at once */

#ifndef INIT_CMDLINE_PATH
#define INIT_CMDLINE_PATH "/proc/cmdline"  /* overridable for host-side smoke tests */
#endif

static sigjmp_buf fault_env;
static volatile sig_atomic_t fault_signo;
static volatile sig_atomic_t fault_code;
static void *volatile fault_addr;
static volatile sig_atomic_t fault_armed;

static void on_fault(int signo, siginfo_t *si, void *uctx)
{
    (void)uctx;
    fault_signo = signo;
    fault_code = si ? si->si_code : 0;
    fault_addr = si ? si->si_addr : NULL;
    if (fault_armed)
        siglongjmp(fault_env, 1);
    /* A SIGBUS outside the armed window: nothing to return to safely. */
    static const char msg[] = "SEATEST ERROR unexpected signal outside the access window\n";
    (void)!write(1, msg, sizeof msg - 1);
    sync();
    reboot(RB_POWER_OFF);
    _exit(1);
}

static void ensure_console(void)
{
    /* The kernel opens /dev/console as fds 0-2 when the initramfs has the node. */
    if (fcntl(1, F_GETFD) >= 0)
        return;
    int fd = open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd < 0)
        return; /* nowhere to print: carry on silently, still power off */
    for (int i = 0; i < 3; i++)
        if (fd != i)
            dup2(fd, i);
    if (fd > 2)
        close(fd);
}

static void do_mount(const char *src, const char *target, const char *fstype)
{
    if (mkdir(target, 0755) < 0 && errno != EEXIST) {
        printf("INIT ERROR mkdir %s: %s\n", target, strerror(errno));
        return;
    }
    if (mount(src, target, fstype, 0, NULL) == 0 || errno == EBUSY)
        return;
    if (errno == ENODEV)
        printf("INIT note: no %s filesystem in this kernel, %s not mounted\n", fstype, target);
    else
        printf("INIT ERROR mount %s on %s: %s\n", fstype, target, strerror(errno));
}

/* Read a small text file into buf (NUL-terminated, trailing newline stripped). */
static int read_text(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < size) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
        buf[--len] = '\0';
    return 0;
}

static int cmdline_has(const char *cmdline, const char *word)
{
    size_t wl = strlen(word);
    const char *p = cmdline;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *end = p;
        while (*end && *end != ' ')
            end++;
        size_t tl = (size_t)(end - p);
        if ((tl == wl || (tl > wl && p[wl] == '=')) && strncmp(p, word, wl) == 0)
            return 1;
        p = end;
    }
    return 0;
}

/* The number in "word=N" on the command line; dflt when the word has no "=N". */
static long cmdline_number(const char *cmdline, const char *word, long dflt)
{
    size_t wl = strlen(word);
    for (const char *p = strstr(cmdline, word); p; p = strstr(p + 1, word))
        if ((p == cmdline || p[-1] == ' ') && p[wl] == '=')
            return strtol(p + wl + 1, NULL, 0);
    return dflt;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void print_hw_corrupted(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) {
        printf("SEATEST ERROR open /proc/meminfo: %s\n", strerror(errno));
        return;
    }
    char line[256];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "HardwareCorrupted:", 18) == 0) {
            fputs(line, stdout);
            found = 1;
            break;
        }
    }
    fclose(f);
    if (!found)
        printf("SEATEST note: no HardwareCorrupted: line in /proc/meminfo (CONFIG_MEMORY_FAILURE off?)\n");
}

/* Physical address of va through /proc/self/pagemap; 0 (with a printed reason) on failure. */
static uint64_t virt_to_phys(uintptr_t va, long page_size)
{
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("SEATEST ERROR open /proc/self/pagemap: %s\n", strerror(errno));
        return 0;
    }
    uint64_t entry = 0;
    off_t off = (off_t)(va / (uintptr_t)page_size) * (off_t)sizeof entry;
    ssize_t n = pread(fd, &entry, sizeof entry, off);
    int e = errno;
    close(fd);
    if (n != (ssize_t)sizeof entry) {
        printf("SEATEST ERROR read /proc/self/pagemap: %s\n", n < 0 ? strerror(e) : "short read");
        return 0;
    }
    if (!(entry >> 63 & 1)) {
        printf("SEATEST ERROR victim page not present (pagemap entry 0x%llx)\n", (unsigned long long)entry);
        return 0;
    }
    uint64_t pfn = entry & ((1ULL << 55) - 1);
    if (pfn == 0) {
        printf("SEATEST ERROR pagemap hides the PFN (needs CAP_SYS_ADMIN)\n");
        return 0;
    }
    return pfn * (uint64_t)page_size + (va & (uintptr_t)(page_size - 1));
}

/* Route two signals to on_fault (SA_SIGINFO: si_code and si_addr are kept). */
static int catch_faults(int sig1, int sig2)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig1, &sa, NULL) < 0 || sigaction(sig2, &sa, NULL) < 0 ? -1 : 0;
}

static void seatest(long cpu)
{
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((int)cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0) {
            printf("SEATEST ERROR sched_setaffinity(cpu %ld): %s\n", cpu, strerror(errno));
            return;
        }
    }
    long page_size = sysconf(_SC_PAGESIZE);
    if (page_size <= 0)
        page_size = 4096;

    unsigned char *page = mmap(NULL, (size_t)page_size, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        printf("SEATEST ERROR mmap: %s\n", strerror(errno));
        return;
    }
    memset(page, FILL_BYTE, (size_t)page_size);
    if (mlock(page, (size_t)page_size) < 0)
        printf("SEATEST note: mlock: %s\n", strerror(errno));

    volatile unsigned char *victim = page + VICTIM_OFFSET;
    uint64_t pa = virt_to_phys((uintptr_t)victim, page_size);
    if (pa == 0)
        return;

    if (catch_faults(SIGBUS, SIGALRM) < 0) {
        printf("SEATEST ERROR sigaction: %s\n", strerror(errno));
        return;
    }

    int faulted = sigsetjmp(fault_env, 1);
    if (!faulted) {
        fault_armed = 1;
        printf("SEATEST victim va=0x%lx PADDR=0x%lx cpu=%d\n", (unsigned long)(uintptr_t)victim,
               (unsigned long)pa, sched_getcpu());
        sleep_ms(200); /* the host poisons PADDR now */
        alarm(ACCESS_TIMEOUT_S);
        unsigned char value = *victim; /* the access that should take the SEA */
        alarm(0);
        fault_armed = 0;
        printf("SEATEST no SIGBUS (read 0x%02x, expected 0x%02x)\n", value, FILL_BYTE);
    } else {
        fault_armed = 0;
        alarm(0);
        if (fault_signo == SIGBUS)
            printf("SEATEST SIGBUS si_code=%d (BUS_MCEERR_AR=%d) si_addr=0x%lx\n",
                   (int)fault_code, BUS_MCEERR_AR, (unsigned long)(uintptr_t)fault_addr);
        else
            printf("SEATEST ERROR no SIGBUS and the access did not complete within %d s (signal %d)\n",
                   ACCESS_TIMEOUT_S, (int)fault_signo);
    }
    print_hw_corrupted();
}

static int count_processors(void)
{
    char buf[16384];
    int n = 0;
    if (read_text("/proc/cpuinfo", buf, sizeof buf) < 0)
        return -1;
    for (const char *p = buf; (p = strstr(p, "processor")) != NULL; p++)
        if (p == buf || p[-1] == '\n')
            n++;
    return n;
}

static void print_online(const char *what)
{
    char online[64];
    if (read_text("/sys/devices/system/cpu/online", online, sizeof online) < 0)
        snprintf(online, sizeof online, "unknown");
    online[strcspn(online, "\n")] = '\0';
    printf("SMPTEST %s online=%s\n", what, online);
}

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

static void smptest(void)
{
    char what[64];
    snprintf(what, sizeof what, "processors=%d", count_processors());
    print_online(what);
    const char *cpu1 = "/sys/devices/system/cpu/cpu1/online";
    if (write_text(cpu1, "0") < 0) {
        printf("SMPTEST ERROR offline cpu1: %s\n", strerror(errno));
        return;
    }
    print_online("cpu1 offline");
    if (write_text(cpu1, "1") < 0) {
        printf("SMPTEST ERROR online cpu1: %s\n", strerror(errno));
        return;
    }
    print_online("cpu1 online");
}

#define BUSTEST_PA 0x0b000000ul
#define BUSTEST_OFFSET 0x18

static void bustest_access(volatile uint32_t *p, int write)
{
    const char *what = write ? "write" : "read";
    if (catch_faults(SIGBUS, SIGSEGV) < 0) {
        printf("BUSTEST ERROR sigaction: %s\n", strerror(errno));
        return;
    }
    fault_signo = 0;
    if (!sigsetjmp(fault_env, 1)) {
        fault_armed = 1;
        if (write)
            *p = 0x5a5a5a5a;
        else
            (void)*p;
        fault_armed = 0;
        printf("BUSTEST %s va=0x%lx no fault\n", what, (unsigned long)(uintptr_t)p);
    } else {
        fault_armed = 0;
        printf("BUSTEST %s va=0x%lx %s si_code=%d si_addr=0x%lx\n", what, (unsigned long)(uintptr_t)p,
               fault_signo == SIGBUS ? "SIGBUS" : "SIGNAL", (int)fault_code,
               (unsigned long)(uintptr_t)fault_addr);
    }
}

static void bustest(void)
{
    int fd = open("/dev/mem", O_RDWR | O_SYNC);
    if (fd < 0) {
        printf("BUSTEST ERROR open /dev/mem: %s\n", strerror(errno));
        return;
    }
    unsigned char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)BUSTEST_PA);
    close(fd);
    if (map == MAP_FAILED) {
        printf("BUSTEST ERROR mmap /dev/mem at 0x%lx: %s\n", BUSTEST_PA, strerror(errno));
        return;
    }
    bustest_access((volatile uint32_t *)(map + BUSTEST_OFFSET), 0);
    bustest_access((volatile uint32_t *)(map + BUSTEST_OFFSET), 1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void bench_report(const char *name, long n, uint64_t ns)
{
    printf("BENCH %s n=%ld ns=%llu\n", name, n, (unsigned long long)ns);
}

static int bench_getpid(long n)
{
    volatile long sink = 0;
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        sink += syscall(SYS_getpid); /* a real svc each time (no libc caching) */
    bench_report("getpid", n, now_ns() - t0);
    if (sink != n) { /* PID 1 */
        printf("BENCH ERROR getpid returned %ld in total\n", (long)sink);
        return -1;
    }
    return 0;
}

static int bench_pagefault(long n)
{
    long page_size = sysconf(_SC_PAGESIZE);
    if (page_size <= 0)
        page_size = 4096;
    uint64_t t0 = now_ns();
    for (long done = 0; done < n; done += BENCH_FAULT_CHUNK) {
        long pages = n - done < BENCH_FAULT_CHUNK ? n - done : BENCH_FAULT_CHUNK;
        size_t len = (size_t)pages * (size_t)page_size;
        volatile unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("BENCH ERROR pagefault mmap: %s\n", strerror(errno));
            return -1;
        }
        /* One fault per 4 KiB page, not one per 2 MiB (THP is "always" in Debian's kernels). */
        (void)madvise((void *)p, len, MADV_NOHUGEPAGE);
        for (long i = 0; i < pages; i++)
            p[i * page_size] = 1;
        munmap((void *)p, len);
    }
    bench_report("pagefault", n, now_ns() - t0);
    return 0;
}

static int bench_wait_child(pid_t pid, const char *what)
{
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            printf("BENCH ERROR %s waitpid: %s\n", what, strerror(errno));
            return -1;
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("BENCH ERROR %s child status 0x%x\n", what, status);
        return -1;
    }
    return 0;
}

static int bench_fork(int exec_init, long n)
{
    const char *name = exec_init ? "forkexec" : "fork";
    char *const argv[] = { "/init", BENCH_CHILD_ARG, NULL };
    char *const envp[] = { NULL };
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            printf("BENCH ERROR %s fork: %s\n", name, strerror(errno));
            return -1;
        }
        if (pid == 0) {
            if (exec_init)
                execve("/init", argv, envp);
            _exit(exec_init ? 127 : 0);
        }
        if (bench_wait_child(pid, name) < 0)
            return -1;
    }
    bench_report(name, n, now_ns() - t0);
    return 0;
}

/* The value of "word=VALUE" on the command line into buf; 0 if found. */
static int cmdline_value(const char *cmdline, const char *word, char *buf, size_t size)
{
    size_t wl = strlen(word);
    for (const char *p = strstr(cmdline, word); p; p = strstr(p + 1, word))
        if ((p == cmdline || p[-1] == ' ') && p[wl] == '=') {
            size_t n = strcspn(p + wl + 1, " ");
            if (n >= size)
                n = size - 1;
            memcpy(buf, p + wl + 1, n);
            buf[n] = '\0';
            return 0;
        }
    return -1;
}

#define EINJ_DIR "/sys/kernel/debug/apei/einj"
#define EINJ_ONE_PAGE "0xfffffffffffff000"
#define EINJ_CE_WAIT_MS 500

/* The "<module>.<param>=<value>" words of the kernel command line as the module's
 * parameters ("param=value ..."), as modprobe passes them: the kernel applies such words
 * itself only to built-in code. `path` names the module file (dashes read as underscores). */
static void module_cmdline_params(const char *path, char *params, size_t size)
{
    char name[128], cmdline[4096];
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t n = strcspn(base, ".");
    if (n >= sizeof name - 1)
        n = sizeof name - 2;
    for (size_t i = 0; i < n; i++)
        name[i] = base[i] == '-' ? '_' : base[i];
    name[n] = '.';
    name[n + 1] = '\0';
    params[0] = '\0';
    if (read_text(INIT_CMDLINE_PATH, cmdline, sizeof cmdline) < 0)
        return;
    size_t used = 0;
    char *save = NULL;      /* strtok_r: a caller may be inside its own strtok loop */
    for (char *word = strtok_r(cmdline, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
        if (strncmp(word, name, n + 1) != 0 || !word[n + 1])
            continue;
        int w = snprintf(params + used, size - used, "%s%s", used ? " " : "", word + n + 1);
        if (w < 0 || (size_t)w >= size - used)
            break;
        used += (size_t)w;
    }
}

static int load_module_file(const char *tag, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("%s ERROR open %s: %s\n", tag, path, strerror(errno));
        return -1;
    }
    char params[512];
    module_cmdline_params(path, params, sizeof params);
    if (params[0])
        printf("%s parameters %s\n", tag, params);
    long rc = syscall(SYS_finit_module, fd, params, 0);
    int e = errno;
    close(fd);
    if (rc < 0 && e != EEXIST) {
        printf("%s ERROR finit_module %s: %s\n", tag, path, strerror(e));
        return -1;
    }
    printf("%s loaded %s\n", tag, path);
    return 0;
}

/* Load module `name` and its dependencies as modules.dep lists them (the last first);
 * messages start with `tag`. */
static int load_module(const char *tag, const char *name)
{
    struct utsname u;
    if (uname(&u) < 0) {
        printf("%s ERROR uname: %s\n", tag, strerror(errno));
        return -1;
    }
    char root[256], dep_path[300];
    snprintf(root, sizeof root, "/lib/modules/%s", u.release);
    snprintf(dep_path, sizeof dep_path, "%s/modules.dep", root);
    FILE *f = fopen(dep_path, "r");
    if (!f) {
        printf("%s ERROR open %s: %s\n", tag, dep_path, strerror(errno));
        return -1;
    }
    char line[4096], want[128];
    snprintf(want, sizeof want, "/%s.ko:", name);
    int rc = -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        size_t wl = strlen(want);
        if ((size_t)(colon + 1 - line) < wl || strncmp(colon + 1 - wl, want, wl) != 0)
            continue;
        *colon = '\0';
        char *deps[64];
        int n = 0;
        for (char *tok = strtok(colon + 1, " "); tok && n < 64; tok = strtok(NULL, " "))
            deps[n++] = tok;
        rc = 0;
        char path[600];
        for (int i = n - 1; i >= 0 && rc == 0; i--) {
            snprintf(path, sizeof path, "%s/%s", root, deps[i]);
            rc = load_module_file(tag, path);
        }
        if (rc == 0) {
            snprintf(path, sizeof path, "%s/%s", root, line);
            rc = load_module_file(tag, path);
        }
        break;
    }
    fclose(f);
    if (rc < 0 && errno == 0)
        printf("%s ERROR no %s.ko in %s\n", tag, name, dep_path);
    return rc;
}

static int write_debugfs(const char *dir, const char *file, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

static void einjtest(const char *mode)
{
    unsigned type = strcmp(mode, "uc") == 0 ? 0x10 : strcmp(mode, "ce") == 0 ? 0x8
                    : strcmp(mode, "fatal") == 0 ? 0x20 : 0;
    if (!type) {
        printf("EINJTEST ERROR unknown mode %s (uc, ce or fatal)\n", mode);
        return;
    }
    errno = 0;
    if (load_module("EINJTEST", "einj") < 0)
        return;
    do_mount("debugfs", "/sys/kernel/debug", "debugfs");
    FILE *avail = fopen(EINJ_DIR "/available_error_type", "r");
    if (!avail) {
        printf("EINJTEST ERROR open " EINJ_DIR "/available_error_type: %s\n", strerror(errno));
        return;
    }
    char line[256];
    while (fgets(line, sizeof line, avail))
        printf("EINJTEST available: %s", line);
    fclose(avail);

    long page_size = sysconf(_SC_PAGESIZE);
    if (page_size <= 0)
        page_size = 4096;
    unsigned char *page = mmap(NULL, (size_t)page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        printf("EINJTEST ERROR mmap: %s\n", strerror(errno));
        return;
    }
    memset(page, FILL_BYTE, (size_t)page_size);
    if (mlock(page, (size_t)page_size) < 0)
        printf("EINJTEST note: mlock: %s\n", strerror(errno));
    volatile unsigned char *victim = page + VICTIM_OFFSET;
    uint64_t pa = virt_to_phys((uintptr_t)victim, page_size);
    if (pa == 0)
        return;

    char value[32];
    printf("EINJTEST inject type=0x%x PADDR=0x%lx\n", type, (unsigned long)pa);
    snprintf(value, sizeof value, "0x%x", type);
    if (write_debugfs(EINJ_DIR, "error_type", value) < 0) {
        printf("EINJTEST ERROR write error_type %s: %s\n", value, strerror(errno));
        return;
    }
    snprintf(value, sizeof value, "0x%lx", (unsigned long)pa);
    if (write_debugfs(EINJ_DIR, "param1", value) < 0 || write_debugfs(EINJ_DIR, "param2", EINJ_ONE_PAGE) < 0) {
        printf("EINJTEST ERROR write param1/param2: %s\n", strerror(errno));
        return;
    }
    if (write_debugfs(EINJ_DIR, "error_inject", "1") < 0) {
        printf("EINJTEST error_inject failed: %s\n", strerror(errno));
        return;
    }
    printf("EINJTEST error_inject ok\n");
    if (type == 0x8) {
        sleep_ms(EINJ_CE_WAIT_MS);
        return;
    }
    if (type == 0x20) {
        sleep_ms(EINJ_CE_WAIT_MS);
        printf("EINJTEST ERROR the kernel survived a fatal error\n");
        return;
    }
    if (catch_faults(SIGBUS, SIGALRM) < 0) {
        printf("EINJTEST ERROR sigaction: %s\n", strerror(errno));
        return;
    }
    if (!sigsetjmp(fault_env, 1)) {
        fault_armed = 1;
        alarm(ACCESS_TIMEOUT_S);
        unsigned char got = *victim; /* the access that consumes the poison */
        alarm(0);
        fault_armed = 0;
        printf("EINJTEST no SIGBUS (read 0x%02x, expected 0x%02x)\n", got, FILL_BYTE);
    } else {
        fault_armed = 0;
        alarm(0);
        if (fault_signo == SIGBUS)
            printf("EINJTEST SIGBUS si_code=%d (BUS_MCEERR_AR=%d) si_addr=0x%lx\n",
                   (int)fault_code, BUS_MCEERR_AR, (unsigned long)(uintptr_t)fault_addr);
        else
            printf("EINJTEST ERROR no SIGBUS and the access did not complete within %d s (signal %d)\n",
                   ACCESS_TIMEOUT_S, (int)fault_signo);
    }
    print_hw_corrupted();
}

static void armras_bench(long divisor)
{
    if (divisor < 1)
        divisor = 1;
    if (bench_getpid(BENCH_GETPID_N / divisor ?: 1) == 0 && bench_pagefault(BENCH_FAULT_PAGES / divisor ?: 1) == 0
        && bench_fork(0, BENCH_FORK_N / divisor ?: 1) == 0 && bench_fork(1, BENCH_FORKEXEC_N / divisor ?: 1) == 0)
        printf("BENCH DONE\n");
}

/* irqtest: /proc/interrupts as the kernel counts it (e.g. MSIs through the GICv2m frame). */
static void irqtest(void)
{
    static char buf[16384];
    if (read_text("/proc/interrupts", buf, sizeof buf) < 0) {
        printf("IRQTEST ERROR read /proc/interrupts: %s\n", strerror(errno));
        return;
    }
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
        printf("IRQTEST %s\n", line);
    printf("IRQTEST DONE\n");
}

/* fwtest: SMBIOS (DMI) values and the UEFI clock as Linux sees them. */
static void fwtest(const char *cmdline)
{
    static const char *const dmi[] = { "sys_vendor", "product_name", "product_version", "bios_vendor",
                                       "bios_version", "bios_date", "bios_release", NULL };
    char path[128], buf[256];
    for (int i = 0; dmi[i]; i++) {
        snprintf(path, sizeof path, "/sys/class/dmi/id/%s", dmi[i]);
        if (read_text(path, buf, sizeof buf) < 0)
            printf("FWTEST ERROR %s: %s\n", path, strerror(errno));
        else
            printf("FWTEST dmi %s=%s\n", dmi[i], buf);
    }
    if (read_text("/sys/class/rtc/rtc0/name", buf, sizeof buf) < 0)
        printf("FWTEST ERROR rtc0 name: %s\n", strerror(errno));
    else
        printf("FWTEST rtc0 name=%s\n", buf);
    printf("FWTEST time=%lld\n", (long long)time(NULL));
    long set = cmdline_number(cmdline, "fwtest_settime", 0);
    if (set <= 0)
        return;
    int fd = open("/dev/rtc0", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        printf("FWTEST ERROR open /dev/rtc0: %s\n", strerror(errno));
        return;
    }
    time_t t = (time_t)set;
    struct tm g;
    struct rtc_time rt;
    gmtime_r(&t, &g);
    memset(&rt, 0, sizeof rt);
    rt.tm_sec = g.tm_sec, rt.tm_min = g.tm_min, rt.tm_hour = g.tm_hour;
    rt.tm_mday = g.tm_mday, rt.tm_mon = g.tm_mon, rt.tm_year = g.tm_year;
    if (ioctl(fd, RTC_SET_TIME, &rt) < 0)
        printf("FWTEST ERROR RTC_SET_TIME: %s\n", strerror(errno));
    else
        printf("FWTEST rtc set=%ld\n", set);
    memset(&rt, 0, sizeof rt);
    if (ioctl(fd, RTC_RD_TIME, &rt) < 0)
        printf("FWTEST ERROR RTC_RD_TIME: %s\n", strerror(errno));
    else
        printf("FWTEST rtc read=%04d-%02d-%02dT%02d:%02d:%02d\n", rt.tm_year + 1900, rt.tm_mon + 1,
               rt.tm_mday, rt.tm_hour, rt.tm_min, rt.tm_sec);
    close(fd);
}

#define PSTORE_DIR "/sys/fs/pstore"
#define PSTORE_LINE_MAX 200

static void pstore_print_reasons(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, PSTORE_DIR "/%s", name);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("PSTORE ERROR open %s: %s\n", path, strerror(errno));
        return;
    }
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strstr(line, "Panic#") || strstr(line, "Kernel panic") || strstr(line, "sysrq"))
            printf("PSTORE %s: %.*s\n", name, PSTORE_LINE_MAX, line);
    }
    fclose(f);
}

static void pstoretest(int crash)
{
    if (mount("pstore", PSTORE_DIR, "pstore", 0, NULL) < 0 && errno != EBUSY) {
        printf("PSTORE ERROR mount pstore on %s: %s\n", PSTORE_DIR, strerror(errno));
        return;
    }
    DIR *d = opendir(PSTORE_DIR);
    if (!d) {
        printf("PSTORE ERROR opendir %s: %s\n", PSTORE_DIR, strerror(errno));
        return;
    }
    int files = 0, dmesg = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        struct stat st;
        snprintf(path, sizeof path, PSTORE_DIR "/%s", e->d_name);
        long size = stat(path, &st) == 0 ? (long)st.st_size : -1;
        printf("PSTORE file=%s size=%ld\n", e->d_name, size);
        files++;
        if (strncmp(e->d_name, "dmesg-", 6) == 0) {
            dmesg++;
            pstore_print_reasons(e->d_name);
        }
    }
    closedir(d);
    printf("PSTORE files=%d dmesg=%d\n", files, dmesg);
    if (crash && dmesg == 0) {
        printf("PSTORE crash\n");
        if (write_text("/proc/sysrq-trigger", "c") < 0)
            printf("PSTORE ERROR write /proc/sysrq-trigger: %s\n", strerror(errno));
    }
}

/* efitest / efipstore: UEFI variables from Linux (efivarfs.ko, efi-pstore.ko in the initramfs). */
#define EFIVARS_DIR "/sys/firmware/efi/efivars"
#define EFITEST_GUID "a4a3c0f2-8d1e-4b5c-9f60-7e2d1c0b9a81"   /* the test's own vendor GUID */
#define EFITEST_VAR "ArmrasTest-" EFITEST_GUID                  /* written, kept, read back */
#define EFITEST_SCRATCH "ArmrasScratch-" EFITEST_GUID           /* written, then deleted */
#define EFITEST_DATA "armras efitest 1"
#define EFI_VARIABLE_NV_BS_RT 0x7u        /* NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS */
#define EFITEST_MAX_VARS 128
#define EFITEST_MAX_DATA 0x2004           /* 4 attribute bytes + the firmware's largest variable */

static int efitest_mount(void)
{
    if (load_module("EFITEST", "efivarfs") < 0)
        return -1;
    if (mount("efivarfs", EFIVARS_DIR, "efivarfs", 0, NULL) < 0 && errno != EBUSY) {
        printf("EFITEST ERROR mount efivarfs on %s: %s\n", EFIVARS_DIR, strerror(errno));
        return -1;
    }
    printf("EFITEST mounted efivarfs\n");
    return 0;
}

/* One variable's file: its attributes and data; the data length, or -1. */
static long efitest_read_var(const char *name, uint32_t *attr, unsigned char *data, size_t size)
{
    static unsigned char buf[EFITEST_MAX_DATA];
    char path[512];
    snprintf(path, sizeof path, EFIVARS_DIR "/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf);     /* efivarfs returns the whole variable at once */
    int e = errno;
    close(fd);
    errno = e;
    if (n < 4) {
        if (n >= 0)
            errno = EIO;
        return -1;
    }
    memcpy(attr, buf, 4);
    size_t len = (size_t)n - 4 < size ? (size_t)n - 4 : size;
    memcpy(data, buf + 4, len);
    return (long)n - 4;
}

static int efitest_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void efitest_list(void)
{
    DIR *d = opendir(EFIVARS_DIR);
    if (!d) {
        printf("EFITEST ERROR opendir %s: %s\n", EFIVARS_DIR, strerror(errno));
        return;
    }
    char *names[EFITEST_MAX_VARS];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < EFITEST_MAX_VARS)
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], efitest_cmp);
    for (int i = 0; i < n; i++) {
        uint32_t attr;
        unsigned char data[8];
        long size = efitest_read_var(names[i], &attr, data, sizeof data);
        if (size < 0)
            printf("EFITEST ERROR read %s: %s\n", names[i], strerror(errno));
        else
            printf("EFITEST var %s attr=0x%x size=%ld\n", names[i], attr, size);
        free(names[i]);
    }
    printf("EFITEST vars=%d\n", n);
}

static void efitest_write(const char *name)
{
    unsigned char buf[4 + sizeof EFITEST_DATA - 1];
    uint32_t attr = EFI_VARIABLE_NV_BS_RT;
    memcpy(buf, &attr, 4);
    memcpy(buf + 4, EFITEST_DATA, sizeof EFITEST_DATA - 1);
    char path[512];
    snprintf(path, sizeof path, EFIVARS_DIR "/%s", name);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        printf("EFITEST ERROR create %s: %s\n", name, strerror(errno));
        return;
    }
    ssize_t n = write(fd, buf, sizeof buf);    /* efivarfs: attributes and data in one write */
    int e = errno;
    close(fd);
    if (n != (ssize_t)sizeof buf)
        printf("EFITEST ERROR write %s: %s\n", name, n < 0 ? strerror(e) : "short write");
    else
        printf("EFITEST wrote %s attr=0x%x size=%zu\n", name, attr, sizeof buf - 4);
}

static void efitest_read(const char *name)
{
    uint32_t attr;
    unsigned char data[128];
    long size = efitest_read_var(name, &attr, data, sizeof data - 1);
    if (size < 0) {
        printf(errno == ENOENT ? "EFITEST read %s missing\n" : "EFITEST ERROR read %s\n", name);
        return;
    }
    data[size < (long)sizeof data - 1 ? size : (long)sizeof data - 1] = '\0';
    printf("EFITEST read %s attr=0x%x data=%s\n", name, attr, (char *)data);
}

static void efitest_delete(const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, EFIVARS_DIR "/%s", name);
    /* efivarfs makes a variable it does not know immutable: clear it first, as `chattr -i` does. */
    int fd = open(path, O_RDONLY | O_CLOEXEC), flags = 0;
    if (fd < 0 || ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0) {
        printf("EFITEST ERROR get flags of %s: %s\n", name, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    if (flags & FS_IMMUTABLE_FL) {
        flags &= ~FS_IMMUTABLE_FL;
        if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0) {
            printf("EFITEST ERROR chattr -i %s: %s\n", name, strerror(errno));
            close(fd);
            return;
        }
        printf("EFITEST chattr -i %s\n", name);
    }
    close(fd);
    if (unlink(path) < 0) {
        printf("EFITEST ERROR unlink %s: %s\n", name, strerror(errno));
        return;
    }
    printf("EFITEST deleted %s\n", name);
    if (stat(path, &st) < 0 && errno == ENOENT)
        printf("EFITEST gone %s\n", name);
    else
        printf("EFITEST ERROR %s still there\n", name);
}

/* "efitest=list,write,read,delete": the steps in order (see the header). */
static void efitest(char *steps)
{
    if (efitest_mount() < 0)
        return;
    for (char *step = strtok(steps, ","); step; step = strtok(NULL, ",")) {
        if (strcmp(step, "list") == 0)
            efitest_list();
        else if (strcmp(step, "write") == 0) {
            efitest_write(EFITEST_VAR);
            efitest_write(EFITEST_SCRATCH);
        } else if (strcmp(step, "read") == 0) {
            efitest_read(EFITEST_VAR);
            efitest_read(EFITEST_SCRATCH);
        } else if (strcmp(step, "delete") == 0)
            efitest_delete(EFITEST_SCRATCH);
        else
            printf("EFITEST ERROR unknown step %s (list, write, read or delete)\n", step);
    }
}

/* Remove every dmesg-* file of /sys/fs/pstore: the backend erases its record. */
static void efipstore_clear(void)
{
    if (mount("pstore", PSTORE_DIR, "pstore", 0, NULL) < 0 && errno != EBUSY) {
        printf("EFITEST ERROR mount pstore on %s: %s\n", PSTORE_DIR, strerror(errno));
        return;
    }
    DIR *d = opendir(PSTORE_DIR);
    if (!d) {
        printf("EFITEST ERROR opendir %s: %s\n", PSTORE_DIR, strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "dmesg-", 6) != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, PSTORE_DIR "/%s", e->d_name);
        if (unlink(path) < 0)
            printf("EFITEST ERROR unlink %s: %s\n", path, strerror(errno));
        else
            printf("EFITEST pstore removed %s\n", e->d_name);
    }
    closedir(d);
}

/* "efipstore": efi-pstore.ko as pstore's backend (with erst_disable or pstore.backend=...);
 * "efipstore_clear": then remove the saved dmesg files. */
static void efipstore(int clear)
{
    char buf[16];
    if (load_module("EFITEST", "efi-pstore") < 0)
        return;
    if (read_text("/sys/module/efi_pstore/parameters/pstore_disable", buf, sizeof buf) == 0)
        printf("EFITEST efi_pstore pstore_disable=%s\n", buf);
    if (clear)
        efipstore_clear();
}

#define SH_ARG_MAX 256
#define SEATEST_CHILD_ARG "--seatest"   /* argv[1] of "/init --seatest [CPU]" run from a script */

static void run_script(const char *cmdline)
{
    char script[SH_ARG_MAX];
    const char *p = strstr(cmdline, "armras_sh=");
    while (p && p != cmdline && p[-1] != ' ')
        p = strstr(p + 1, "armras_sh=");
    if (!p)
        return;
    p += strlen("armras_sh=");
    size_t n = strcspn(p, " ");
    if (n == 0 || n >= sizeof script) {
        printf("SH ERROR armras_sh= wants a path of 1-%d characters\n", SH_ARG_MAX - 1);
        return;
    }
    memcpy(script, p, n);
    script[n] = '\0';
    pid_t pid = fork();
    if (pid < 0) {
        printf("SH ERROR fork: %s\n", strerror(errno));
        return;
    }
    if (pid == 0) {
        char *const argv[] = { "sh", script, NULL };
        char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=dumb", NULL };
        execve("/bin/sh", argv, envp);
        printf("SH ERROR exec /bin/sh: %s\n", strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            printf("SH ERROR waitpid: %s\n", strerror(errno));
            return;
        }
    }
    if (WIFEXITED(status))
        printf("SH exit=%d\n", WEXITSTATUS(status));
    else
        printf("SH killed signal=%d\n", WIFSIGNALED(status) ? WTERMSIG(status) : -1);
}

int main(int argc, char **argv)
{
    /* "/init --seatest [CPU]" from a guest script: the seatest victim as an ordinary process. */
    if (argc > 1 && strcmp(argv[1], SEATEST_CHILD_ARG) == 0 && getpid() != 1) {
        setvbuf(stdout, NULL, _IONBF, 0);
        seatest(argc > 2 ? strtol(argv[2], NULL, 0) : -1);
        printf("SEATEST DONE\n");
        return 0;
    }
    /* The forkexec workload's child: exit before touching anything (never PID 1). */
    if (argc > 1 && strcmp(argv[1], BENCH_CHILD_ARG) == 0 && getpid() != 1)
        _exit(0);
    ensure_console();
    setvbuf(stdout, NULL, _IONBF, 0);

    do_mount("proc", "/proc", "proc");
    do_mount("sysfs", "/sys", "sysfs");
    do_mount("devtmpfs", "/dev", "devtmpfs");

    char uptime[64];
    if (read_text("/proc/uptime", uptime, sizeof uptime) < 0)
        snprintf(uptime, sizeof uptime, "unknown");
    else
        uptime[strcspn(uptime, " ")] = '\0';
    printf("INIT-OK uptime=%s\n", uptime);

    char cmdline[4096];
    if (read_text(INIT_CMDLINE_PATH, cmdline, sizeof cmdline) < 0) {
        printf("INIT ERROR read %s: %s\n", INIT_CMDLINE_PATH, strerror(errno));
        cmdline[0] = '\0';
    }
    if (cmdline_has(cmdline, "smptest"))
        smptest();
    if (cmdline_has(cmdline, "bustest"))
        bustest();
    if (cmdline_has(cmdline, "seatest")) {
        seatest(cmdline_number(cmdline, "seatest_cpu", -1));
        printf("SEATEST DONE\n");
    }
    char efi_steps[64];
    if (cmdline_value(cmdline, "efitest", efi_steps, sizeof efi_steps) == 0) {
        efitest(efi_steps);
        printf("EFITEST DONE\n");
    }
    if (cmdline_has(cmdline, "efipstore"))
        efipstore(cmdline_has(cmdline, "efipstore_clear"));
    if (cmdline_has(cmdline, "pstoretest"))
        pstoretest(cmdline_has(cmdline, "pstore_crash"));
    char einj_modes[64];
    if (cmdline_value(cmdline, "einjtest", einj_modes, sizeof einj_modes) == 0) {
        for (char *mode = strtok(einj_modes, ","); mode; mode = strtok(NULL, ","))
            einjtest(mode);
        printf("EINJTEST DONE\n");
    }
    if (cmdline_has(cmdline, "fwtest"))
        fwtest(cmdline);
    if (cmdline_has(cmdline, "armras_bench"))
        armras_bench(cmdline_number(cmdline, "armras_bench", 1));
    run_script(cmdline);
    long sleep_for = cmdline_number(cmdline, "armras_sleep_ms", 0);
    if (sleep_for > 0) {
        printf("SLEEP ms=%ld\n", sleep_for);
        sleep_ms(sleep_for);
        printf("SLEEP DONE\n");
    }
    if (cmdline_has(cmdline, "irqtest"))
        irqtest();

    sync();
    reboot(RB_POWER_OFF);
    printf("INIT ERROR reboot(RB_POWER_OFF): %s\n", strerror(errno));
    for (;;)
        pause(); /* init must never exit */
}
