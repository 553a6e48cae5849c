// unsupported: a program holding one thing ckpt-restart cannot recreate,
// for the tests that check it is named before anything is restored.
//
// usage: unsupported shm | seccomp | connect PORT
//
//   shm      attaches a System V shared memory segment and unmaps half of
//            it, which a restore cannot attach again (removed with
//            IPC_RMID at once, so nothing outlives the test)
//   seccomp  installs an allow-everything seccomp filter with
//            CAP_SYS_ADMIN and without no_new_privs, then drops the
//            capability: the restored process could not install it
//   connect  keeps a TCP connection to 127.0.0.1:PORT open at fd 5
//
// Prints "ready pid=P", then "count N" every 50 ms.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
	perror(what);
	exit(2);
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: unsupported shm|seccomp|connect PORT\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *what = argv[1];
	if (strcmp(what, "shm") == 0) {
		int id = shmget(IPC_PRIVATE, 1 << 16, IPC_CREAT | 0600);
		if (id < 0)
			die("shmget");
		char *p = shmat(id, NULL, 0);
		if (p == (void *)-1)
			die("shmat");
		shmctl(id, IPC_RMID, NULL); // gone once detached
		strcpy(p, "shared");
		if (munmap(p + (1 << 15), 1 << 15) < 0)
			die("munmap");
	} else if (strcmp(what, "seccomp") == 0) {
		struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
		struct sock_fprog prog = {.len = 1, .filter = allow};
		struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
		struct __user_cap_data_struct d[2];
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0 || syscall(SYS_capget, &h, d) < 0)
			die("seccomp");
		d[0].effective &= ~(1u << CAP_SYS_ADMIN);
		if (syscall(SYS_capset, &h, d) < 0)
			die("capset");
	} else if (strcmp(what, "connect") == 0 && argc > 2) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2])),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		if (connect(s, (struct sockaddr *)&sin, sizeof sin) < 0)
			die("connect");
		if (dup2(s, 5) < 0)
			die("dup2");
		close(s);
	} else {
		fprintf(stderr, "unsupported: unknown mode %s\n", what);
		return 2;
	}
	printf("ready pid=%d\n", getpid());
	struct timespec tick = {0, 50 * 1000000L};
	for (long n = 0;; n++) {
		printf("count %ld\n", n);
		nanosleep(&tick, NULL);
	}
}
