/* boot_load(): reads the kernel, detects its format from the contents and hands it to the bzImage
 * (bzimage.c) or PVH (pvh.c) loader; the pieces both share: reading files, the command line, the
 * initrd, the GDT and the boot page tables. */
#include "loader.h"

#include <kvmm/log.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PTE_P_RW 0x3ull
#define PDE_PS 0x80ull /* a 2 MiB page */
#define PT_PAGES 6     /* PML4, PDPT, 4 PDs */

/* 0x10: code (L=1 for long mode, else D=1: 32-bit), 0x18: flat data; base 0, 4 GiB limit. */
#define GDT_CODE64 0x00af9b000000ffffull
#define GDT_CODE32 0x00cf9b000000ffffull
#define GDT_DATA 0x00cf93000000ffffull

/* Opens path for reading; its size in *size. -errno (logged) when it cannot be opened or read. */
static int boot_open(const char *path, const char *what, uint64_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;

	if (fd < 0) {
		err = -errno;
		log_error("%s %s: cannot open: %s", what, path, strerror(-err));
		return err;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		log_error("%s %s: %s", what, path, strerror(-err));
		close(fd);
		return err;
	}
	if (!S_ISREG(st.st_mode)) {
		log_error("%s %s: not a regular file", what, path);
		close(fd);
		return -EINVAL;
	}
	*size = (uint64_t)st.st_size;
	return fd;
}

/* Reads exactly len bytes; a short file (changed under us) is -EIO. */
static int boot_read_all(int fd, const char *path, const char *what, uint8_t *dst, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, dst + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? -errno : -EIO;

			log_error("%s %s: read failed: %s", what, path,
				  n < 0 ? strerror(-err) : "the file shrank while being read");
			return err;
		}
		done += (size_t)n;
	}
	return 0;
}

/* Reads the whole kernel; one larger than guest RAM can never fit and is refused before reading. */
static int kfile_read(struct kfile *k, const char *path, uint64_t limit)
{
	uint64_t size;
	int fd = boot_open(path, "kernel", &size), err;

	memset(k, 0, sizeof(*k));
	k->path = path;
	if (fd < 0)
		return fd;
	if (size > limit || size > SIZE_MAX / 2) {
		log_error("kernel %s: %llu bytes do not fit in %llu MiB of guest memory", path,
			  (unsigned long long)size, (unsigned long long)(limit >> 20));
		close(fd);
		return -E2BIG;
	}
	k->size = (size_t)size;
	k->data = malloc(k->size ? k->size : 1);
	if (!k->data) {
		log_error("kernel %s: no host memory to read %zu bytes", path, k->size);
		close(fd);
		return -ENOMEM;
	}
	err = boot_read_all(fd, path, "kernel", k->data, k->size);
	close(fd);
	if (err < 0) {
		free(k->data);
		k->data = NULL;
	}
	return err;
}

int boot_cmdline_write(struct gmem *gm, const char *cmdline, size_t max)
{
	size_t len = strlen(cmdline);

	if (max > BOOT_CMDLINE_MAX - 1)
		max = BOOT_CMDLINE_MAX - 1;
	if (len > max) {
		log_error("kernel command line: %zu bytes, the kernel accepts at most %zu", len, max);
		return -E2BIG;
	}
	return gmem_write(gm, BOOT_CMDLINE_GPA, cmdline, len + 1);
}

int boot_initrd_load(struct gmem *gm, const char *path, uint64_t floor, uint64_t ceiling,
		     struct initrd_place *out)
{
	uint64_t size, gpa;
	uint8_t *dst;
	int fd, err;

	out->gpa = out->size = 0;
	if (!path)
		return 0;
	fd = boot_open(path, "initrd", &size);
	if (fd < 0)
		return fd;
	if (ceiling > gmem_low_top(gm))
		ceiling = gmem_low_top(gm);
	floor = (floor + GMEM_PAGE_SIZE - 1) & ~(GMEM_PAGE_SIZE - 1);
	if (size == 0) {
		log_warn("initrd %s: empty, booting without one", path);
		close(fd);
		return 0;
	}
	/* The highest page-aligned start in [floor, ceiling - size]; written without overflow. */
	gpa = size <= ceiling ? (ceiling - size) & ~(GMEM_PAGE_SIZE - 1) : 0;
	dst = size <= ceiling && gpa >= floor ? gmem_ptr(gm, gpa, size) : NULL;
	if (!dst) {
		log_error("initrd %s: %llu bytes do not fit in guest RAM between the kernel (%#llx) and %#llx",
			  path, (unsigned long long)size, (unsigned long long)floor,
			  (unsigned long long)ceiling);
		close(fd);
		return -E2BIG;
	}
	/* Straight into guest memory: initrds can be hundreds of MiB. */
	err = boot_read_all(fd, path, "initrd", dst, (size_t)size);
	close(fd);
	if (err < 0)
		return err;
	out->gpa = gpa;
	out->size = size;
	return 0;
}

int boot_cpu_tables_write(struct gmem *gm, enum boot_mode mode, struct boot_entry *entry)
{
	const uint64_t gdt[4] = { 0, 0, mode == BOOT_LINUX64 ? GDT_CODE64 : GDT_CODE32, GDT_DATA };
	uint64_t *pt;

	if (gmem_write(gm, BOOT_GDT_GPA, gdt, sizeof(gdt)) < 0)
		return -EFAULT;
	entry->gdt_base = BOOT_GDT_GPA;
	entry->gdt_limit = sizeof(gdt) - 1;
	entry->cr3 = 0;
	if (mode != BOOT_LINUX64)
		return 0;

	/* The 64-bit boot protocol (boot.rst, "64-bit BOOT PROTOCOL") needs the kernel, zero page and
	 * command line identity-mapped; mapping all of 0-4 GiB covers wherever they are. */
	pt = gmem_ptr(gm, BOOT_PML4_GPA, PT_PAGES * GMEM_PAGE_SIZE);
	if (!pt)
		return -EFAULT;
	memset(pt, 0, PT_PAGES * GMEM_PAGE_SIZE);
	pt[0] = (BOOT_PML4_GPA + GMEM_PAGE_SIZE) | PTE_P_RW;
	for (uint64_t i = 0; i < 4; i++) {
		uint64_t pd_gpa = BOOT_PML4_GPA + (2 + i) * GMEM_PAGE_SIZE;
		uint64_t *pd = pt + (2 + i) * 512;

		pt[512 + i] = pd_gpa | PTE_P_RW;
		for (uint64_t j = 0; j < 512; j++)
			pd[j] = (i << 30) | (j << 21) | PDE_PS | PTE_P_RW;
	}
	entry->cr3 = BOOT_PML4_GPA;
	return 0;
}

/* The reset vector (f000:fff0, physical 0xffff0 below 1 MiB), where a PC's firmware starts and
 * where a guest jumps to reboot "through the BIOS": Linux does that last, when no other method
 * worked, and first on a HW-reduced ACPI machine without EFI (arch/x86/kernel/reboot.c makes
 * BOOT_EFI the default there, and efi_reboot falls through to BOOT_BIOS). kvmm has no firmware,
 * so the vector holds just this, in real mode: mov al, 6; mov dx, 0xcf9; out dx, al (a system
 * reset through the PIIX reset control register); hlt; jmp back to hlt. */
static int boot_reset_vector_write(struct gmem *gm)
{
	static const uint8_t code[] = { 0xb0, BOOT_ACPI_RESET_VALUE, 0xba, BOOT_ACPI_RESET_PORT & 0xff,
					BOOT_ACPI_RESET_PORT >> 8, 0xee, 0xf4, 0xeb, 0xfd };

	return gmem_write(gm, BOOT_RESET_VECTOR_GPA, code, sizeof(code));
}

int boot_load(struct gmem *gm, const struct boot_config *bc, struct boot_entry *entry)
{
	struct kfile k;
	int err;

	if (!bc->kernel_path) {
		log_error("no kernel given");
		return -EINVAL;
	}
	err = kfile_read(&k, bc->kernel_path, gm->ram_size);
	if (err < 0)
		return err;
	memset(entry, 0, sizeof(*entry));
	if (bzimage_probe(&k)) {
		err = bzimage_load(gm, bc, &k, entry);
	} else if (pvh_probe(&k)) {
		err = pvh_load(gm, bc, &k, entry);
	} else {
		log_error("kernel %s: neither a Linux bzImage nor an ELF file (%zu bytes)", k.path, k.size);
		err = -ENOEXEC;
	}
	free(k.data);
	if (err == 0 && boot_reset_vector_write(gm) < 0)
		err = -EFAULT;
	return err;
}
