/* Test /init for tests/test_kallsyms.py: print the guest's own /proc/kallsyms lines for
 * the symbols named on the kernel command line (kallsyms_want=a,b,c) and power off.
 *
 * Output: "KALLSYMS <address> <type> <name>" per match, then
 * "KALLSYMS done <lines read> <crc32 of the whole file>" (zlib's CRC-32, to compare the
 * complete table with the decoder's without sending megabytes over the UART).
 * Built static for aarch64-linux-musl by the test; runs as root, so kptr_restrict only
 * needs lowering in case the kernel defaults it to 2.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <unistd.h>

#define MAX_WANTED 32

static unsigned int crc32_update(unsigned int crc, const char *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= (unsigned char)*p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320u & -(crc & 1));
	}
	return ~crc;
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);

	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0)
			perror(path);
		close(fd);
	}
}

int main(void)
{
	const char *wanted[MAX_WANTED];
	char *list = getenv("kallsyms_want");
	char line[1024], addr[64], name[512], type;
	unsigned long lines = 0;
	unsigned int crc = 0;
	int nwanted = 0;
	FILE *f;

	/* the kernel passes unknown name=value command-line words to init's environment */
	for (char *tok = list ? strtok(list, ",") : NULL; tok && nwanted < MAX_WANTED; tok = strtok(NULL, ","))
		wanted[nwanted++] = tok;

	if (mount("proc", "/proc", "proc", 0, NULL) != 0)
		perror("mount /proc");
	write_file("/proc/sys/kernel/kptr_restrict", "0\n");

	f = fopen("/proc/kallsyms", "r");
	if (!f) {
		perror("/proc/kallsyms");
	} else {
		while (fgets(line, sizeof(line), f)) {
			lines++;
			crc = crc32_update(crc, line, strlen(line));
			if (sscanf(line, "%63s %c %511s", addr, &type, name) != 3)
				continue;
			for (int i = 0; i < nwanted; i++)
				if (!strcmp(name, wanted[i]))
					printf("KALLSYMS %s %c %s\n", addr, type, name);
		}
		fclose(f);
	}
	printf("KALLSYMS done %lu %08x\n", lines, crc);
	fflush(stdout);
	sync();
	reboot(RB_POWER_OFF);
	return 1;
}
